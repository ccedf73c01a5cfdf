"""An independent computation of the unpaired one-level p-value, shared by the inference and gap tests."""

from __future__ import annotations

import numpy as np
from scipy import stats

from mtlens.analysis.inference import hall_p_value


def unpaired_p(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The unpaired one-level p-value of each row pair of ``x`` ``(draws, n_1)`` and ``y`` ``(draws, n_2)``:
    Hall's two-sample statistic from its formula (Welch's ``t`` and the skewness of the difference of the
    means ``gamma = (m_3(x) / n_1^2 − m_3(y) / n_2^2) / se^3``, scipy's moments), against ``hall_p_value``'s
    reference."""
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    n1, n2 = x.shape[1], y.shape[1]
    se = np.sqrt(x.var(axis=1, ddof=1) / n1 + y.var(axis=1, ddof=1) / n2)
    t = (x.mean(axis=1) - y.mean(axis=1)) / se
    gamma = (stats.moment(x, 3, axis=1) / n1**2 - stats.moment(y, 3, axis=1) / n2**2) / se**3
    return hall_p_value(t + gamma * t**2 / 3 + gamma**2 * t**3 / 27 + gamma / 6, (n1, n2))

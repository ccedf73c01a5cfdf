"""Names of the trajectory quantities the built-in probes write: the one place they are spelled.

Rows of a trajectory carry ``quantity`` names (see :mod:`mtlens.store`); a probe's quantities are
``probe/<name>``.  The probes declare theirs when they register (:func:`mtlens.probes.register_probe`)
and the analyses and report sections that read particular ones import these names.
"""

from __future__ import annotations

PROBE_PREFIX = "probe/"

GRAD_COHERENCE = "probe/grad_coherence"
M_COHERENCE = "probe/m_coherence"
FISHER_TRACE = "probe/fisher_trace"
SHARPNESS = "probe/sharpness"
SHARPNESS_SAM = "probe/sharpness_sam"
GRAD_NORM = "probe/grad_norm"
UPDATE_COSINE = "probe/update_cosine"
CONFLICT_COSINE = "probe/conflict_cosine"
MAGNITUDE_SIMILARITY = "probe/magnitude_similarity"
MAGNITUDE_RATIO = "probe/magnitude_ratio"
CONFLICT_FRACTION = "probe/conflict_fraction"
UPDATE_NORM = "probe/update_norm"
INTRA_COSINE_SUBBATCH = "probe/intra_cosine_subbatch"
INTRA_COSINE_CLASSGROUP = "probe/intra_cosine_classgroup"
LOOKAHEAD_AFFINITY = "probe/lookahead_affinity"


def probe_quantity(name: str) -> str:
    """The row quantity of a probe value ``name``: ``probe/<name>``."""
    return PROBE_PREFIX + name

"""The probes a config can name (``probes: [...]``), and the default set."""

from __future__ import annotations

PROBE_NAMES = ("coherence", "fisher", "sharpness", "sharpness_sam", "conflict", "alignment")
"""Every probe: ``coherence`` (probe/grad_coherence, probe/m_coherence), ``fisher``
(probe/fisher_trace), ``sharpness`` (probe/sharpness), ``sharpness_sam`` (probe/sharpness_sam),
``conflict`` (probe/grad_norm, probe/update_cosine, probe/conflict_cosine,
probe/magnitude_similarity, probe/magnitude_ratio, probe/conflict_fraction, probe/update_norm) and
``alignment`` (probe/intra_cosine_subbatch, probe/intra_cosine_classgroup)."""

DEFAULT_PROBES = ("coherence", "fisher", "sharpness_sam", "conflict", "alignment")
"""The probes a config runs unless it says otherwise: all but the adaptive worst-case sharpness,
which costs ``sharpness_steps + 2`` gradients per batch (about five times any other probe with
the default 10 steps); name it in ``probes`` to run it."""

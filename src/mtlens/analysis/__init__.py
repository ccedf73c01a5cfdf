"""Analyses of stored trajectories: generalization gap, transfer, optimization effect, correlations,
gradient alignment; their permutation tests (:mod:`mtlens.analysis.inference`) and A/A calibration."""

from mtlens.analysis.alignment import (
    alignment_distributions,
    alignment_summary,
    magnitude_ratio_summary,
    optimizer_comparison,
)
from mtlens.analysis.correlation import correlate, correlation_table, difference_tests, unit_table
from mtlens.analysis.gap import GapResult, gap_family, generalization_gap
from mtlens.analysis.optimization import loss_ratio_curves, optimization_effect, optimization_tests, steps_to_loss
from mtlens.analysis.transfer import delta_m, selected_checkpoints, transfer_table

__all__ = [
    "GapResult",
    "alignment_distributions",
    "alignment_summary",
    "correlate",
    "correlation_table",
    "delta_m",
    "difference_tests",
    "gap_family",
    "generalization_gap",
    "loss_ratio_curves",
    "magnitude_ratio_summary",
    "optimization_effect",
    "optimization_tests",
    "optimizer_comparison",
    "selected_checkpoints",
    "steps_to_loss",
    "transfer_table",
    "unit_table",
]

"""Analyses of stored trajectories: generalization gap, transfer, correlations."""

from mtlens.analysis.gap import GapResult, generalization_gap
from mtlens.analysis.transfer import delta_m, selected_checkpoints, transfer_table

__all__ = ["GapResult", "delta_m", "generalization_gap", "selected_checkpoints", "transfer_table"]

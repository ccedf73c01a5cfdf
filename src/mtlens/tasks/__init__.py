"""Tasks: what a head predicts, how it is scored, and how labels are sampled from it.

* :mod:`mtlens.tasks.task` -- :class:`Task`, :class:`CorpusMetric`, the classification, binary and
  regression constructors, and the checkpoint-selection rule :func:`selection_scores`.
* :mod:`mtlens.tasks.dense` -- per-pixel tasks: semantic segmentation and depth.
* :mod:`mtlens.tasks.metrics` -- corpus metrics (mIoU, pixel accuracy, F1, Matthews, Pearson, Spearman).
"""

from mtlens.tasks.task import CorpusMetric, Task, binary_task, classification_task, regression_task, selection_scores

__all__ = ["CorpusMetric", "Task", "binary_task", "classification_task", "regression_task", "selection_scores"]

"""Readers of the GLUE benchmark's TSV files (Wang et al. 2019) and offline tokenization.

The eight tasks of :data:`GLUE_TASKS` (WNLI is excluded, as in most GLUE studies: its train
and dev sets are adversarial to each other and models do not beat the majority class).
Files are the ones of the official GLUE release (``{Task}/train.tsv``, ``{Task}/dev.tsv``;
MNLI has ``dev_matched.tsv`` and ``dev_mismatched.tsv``), tab-separated without quoting.
CoLA has no header (columns: source, label, original annotation, sentence); every other
file has a header and its columns are found by name:

======  ==========================  ==============  ===========================================
task    text columns                label column    labels
======  ==========================  ==============  ===========================================
cola    3 (no header)               1               0 unacceptable, 1 acceptable
sst2    sentence                    label           0 negative, 1 positive
mrpc    #1 String, #2 String        Quality         0 not paraphrase, 1 paraphrase
qqp     question1, question2        is_duplicate    0, 1
stsb    sentence1, sentence2        score           float in [0, 5] (regression)
mnli    sentence1, sentence2        gold_label      0 entailment, 1 neutral, 2 contradiction
qnli    question, sentence          label           0 entailment, 1 not_entailment
rte     sentence1, sentence2        label           0 entailment, 1 not_entailment
======  ==========================  ==============  ===========================================

(label indices as in the Hugging Face ``glue`` dataset).  Rows with a different number of
fields than the header (a few malformed QQP lines) are skipped with a warning that counts them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from mtlens.data.registry import DatasetFormatError, DatasetSpec, dataset_lines, register_dataset


@dataclass(frozen=True)
class GlueTaskSpec:
    """Where one GLUE task's columns are and how its labels map to indices (``labels=None``: regression)."""

    directory: str
    text_columns: tuple[str | int, ...]
    label_column: str | int
    labels: tuple[str, ...] | None
    header: bool = True
    dev_files: tuple[str, ...] = ("dev.tsv",)


GlueTaskName = Literal["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"]
"""A GLUE task of the setting (WNLI excluded): the keys of :data:`GLUE_TASKS`."""

GLUE_TASKS: dict[str, GlueTaskSpec] = {
    "cola": GlueTaskSpec("CoLA", (3,), 1, ("0", "1"), header=False),
    "sst2": GlueTaskSpec("SST-2", ("sentence",), "label", ("0", "1")),
    "mrpc": GlueTaskSpec("MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1")),
    "qqp": GlueTaskSpec("QQP", ("question1", "question2"), "is_duplicate", ("0", "1")),
    "stsb": GlueTaskSpec("STS-B", ("sentence1", "sentence2"), "score", None),
    "mnli": GlueTaskSpec(
        "MNLI",
        ("sentence1", "sentence2"),
        "gold_label",
        ("entailment", "neutral", "contradiction"),
        dev_files=("dev_matched.tsv", "dev_mismatched.tsv"),
    ),
    "qnli": GlueTaskSpec("QNLI", ("question", "sentence"), "label", ("entailment", "not_entailment")),
    "rte": GlueTaskSpec("RTE", ("sentence1", "sentence2"), "label", ("entailment", "not_entailment")),
}
"""The eight GLUE tasks used (WNLI excluded), by the task names of the setting."""

GLUE_DATA = register_dataset(
    DatasetSpec(
        name="glue",
        description="GLUE benchmark TSVs (CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE)",
        files=tuple(
            f"{spec.directory}/{name}.tsv"
            for spec in GLUE_TASKS.values()
            for name in ("train", *(f.removesuffix(".tsv") for f in spec.dev_files))
        ),
        size_bytes=1_000_000_000,
        instructions=(
            "Download the task zips of the GLUE release, https://dl.fbaipublicfiles.com/glue/data/{CoLA,SST-2,QQP,"
            "STS-B,MNLI,QNLI,RTE}.zip (the URLs of GLUE's download_glue_data.py), and unzip each here, so that e.g. "
            "CoLA/train.tsv and MNLI/dev_matched.tsv exist. MRPC ships as an .msi; take MRPC/train.tsv and "
            "MRPC/dev.tsv from download_glue_data.py --tasks MRPC (https://gist.github.com/W4ngatang/"
            "60c2bdb54d156a41194446737ce03e2e) or from the Hugging Face 'glue' dataset."
        ),
    )
)


@dataclass(frozen=True)
class GlueExamples:
    """Texts (one tuple of 1 or 2 strings per example) and labels (int64 classes or float32 scores)."""

    texts: list[tuple[str, ...]]
    labels: Tensor

    def __len__(self) -> int:
        return len(self.texts)


def _column_index(column: str | int, position: dict[str, int]) -> int:
    """A column given by index, or by name (a file with a header: ``position`` maps its names)."""
    return column if isinstance(column, int) else position[column]


def read_glue_tsv(path: Path, spec: GlueTaskSpec) -> GlueExamples:
    """Read one GLUE TSV file with the columns and label mapping of ``spec``.

    Rows are separated by ``"\\n"`` only (:func:`mtlens.data.registry.dataset_lines`: a sentence may hold
    other line-break characters).  Rows with another number of fields than the header (without a header:
    too few for the columns read) are skipped with a warning naming the file, their count and the first
    one's line: the official QQP files have a few.  A missing header or column, a label outside the task's
    labels, an STS-B score that is not a number in [0, 5] is a :class:`DatasetFormatError` naming the file
    and line; a file without any example is one naming the file.
    """
    lines = list(enumerate(dataset_lines(path, encoding="utf-8-sig"), start=1))
    if spec.header:
        if not lines:
            raise DatasetFormatError(f"{path}: empty; expected a header line and rows")
        names = lines[0][1].split("\t")
        lines = lines[1:]
        missing = [c for c in (*spec.text_columns, spec.label_column) if c not in names]
        if missing:
            raise DatasetFormatError(f"{path}: header {names} lacks column(s) {missing}")
        position = {name: i for i, name in enumerate(names)}
        n_fields = len(names)
    else:
        position, n_fields = {}, None
    text_at = [_column_index(c, position) for c in spec.text_columns]
    label_at = _column_index(spec.label_column, position)
    texts, labels, skipped = [], [], []
    for number, line in lines:
        fields = line.split("\t")
        if (n_fields is not None and len(fields) != n_fields) or len(fields) <= max(*text_at, label_at):
            skipped.append(number)
            continue
        texts.append(tuple(fields[i] for i in text_at))
        labels.append((number, fields[label_at]))
    if skipped:
        expected = f"the header's {n_fields}" if n_fields is not None else f"at least {max(*text_at, label_at) + 1}"
        warnings.warn(
            f"{path}: skipped {len(skipped)} row(s) without {expected} tab-separated fields (first: line {skipped[0]})",
            stacklevel=2,
        )
    if not texts:
        raise DatasetFormatError(f"{path}: no examples (a header alone, or only malformed rows)")
    return GlueExamples(texts, _glue_targets(path, spec, labels))


def _glue_targets(path: Path, spec: GlueTaskSpec, labels: list[tuple[int, str]]) -> Tensor:
    """The targets of the ``(line, label)`` pairs read from ``path``: class indices, or STS-B's scores
    (finite numbers in [0, 5]); any other label is a :class:`DatasetFormatError` naming the line."""
    if spec.labels is None:
        scores = []
        for number, value in labels:
            try:
                score = float(value)
            except ValueError:
                score = math.nan
            if not 0.0 <= score <= 5.0:  # also refuses nan
                raise DatasetFormatError(f"{path}, line {number}: score {value!r} is not a number in [0, 5]")
            scores.append(score)
        return torch.tensor(scores, dtype=torch.float32)
    index = {label: i for i, label in enumerate(spec.labels)}
    unknown = [(number, value) for number, value in labels if value not in index]
    if unknown:
        number, value = unknown[0]
        raise DatasetFormatError(
            f"{path}, line {number}: unknown label {value!r} ({len(unknown)} such row(s)); expected {list(spec.labels)}"
        )
    return torch.tensor([index[v] for _, v in labels], dtype=torch.long)


def glue_file(task: str, split: str) -> str:
    """The path of ``task``'s ``split`` file relative to the GLUE directory (``split`` as in :func:`read_glue_task`)."""
    return f"{GLUE_TASKS[task].directory}/{split}.tsv"


def read_glue_task(root: Path, task: str, split: str) -> GlueExamples:
    """``split`` is ``'train'`` or a dev file's stem (``'dev'``, ``'dev_matched'``, ``'dev_mismatched'``)."""
    return read_glue_tsv(root / glue_file(task, split), GLUE_TASKS[task])


def tokenize_pairs(tokenizer: Any, texts: Sequence[tuple[str, ...]], max_length: int) -> Tensor:
    """Token ids and attention masks as one int64 tensor ``(N, 2, max_length)``.

    ``[:, 0]`` are the ids of ``<s> a </s></s> b </s>`` (or ``<s> a </s>``) truncated and padded
    to ``max_length`` by the tokenizer; ``[:, 1]`` is the attention mask (1 = token, 0 = padding).
    """
    first = [t[0] for t in texts]
    second = [t[1] for t in texts] if texts and len(texts[0]) > 1 else None
    encoded = tokenizer(
        first, second, truncation=True, max_length=max_length, padding="max_length", return_tensors="pt"
    )
    return torch.stack([encoded["input_ids"], encoded["attention_mask"]], dim=1).long()

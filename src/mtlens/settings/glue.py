"""GLUE: eight NLP tasks on one shared pre-trained RoBERTa-base encoder.

Tasks (see :mod:`mtlens.data.glue` for files, columns and label indices): ``cola``
(Matthews correlation), ``sst2`` (accuracy), ``mrpc`` and ``qqp`` (accuracy, F1), ``stsb``
(regression with Gaussian likelihood; Pearson, Spearman), ``mnli`` (3-way), ``qnli`` and
``rte`` (accuracy).  WNLI is excluded.  Each task has its own sentences (multi-input MTL,
one batch per task per step).  Selection metrics: matthews (cola), f1 (mrpc, qqp), pearson
(stsb), error (the others).

Splits.  GLUE's test labels are hidden, so **test** is the official dev set (MNLI:
``dev_matched``, or ``dev_mismatched`` with ``mnli_test``); **val** is a fixed random
``val_fraction`` of the official train set (at most ``max_val`` examples, seed
:data:`DATA_SEED`); **train** is the rest, optionally subsampled to ``max_train``.

Model.  Sentences (pairs) are tokenized once, when the setting is built, into fixed-length
inputs ``(N, 2, max_length)`` = (token ids, attention mask).  The encoder is the
transformers model ``model_name`` (``roberta-base``, loaded from the local Hugging Face
cache, never downloaded here) and returns the hidden state of the ``<s>`` token; each head
is RoBERTa's classification head (dropout, dense, tanh, dropout, linear).  ``pretrained=False``
builds a randomly initialised model from ``model_name``'s config (the tests' tiny one).
The model class must accept ``add_pooling_layer`` (BERT/RoBERTa family): the unused pooler is
left out so that every shared parameter gets a gradient.
Needs the optional ``nlp`` extra (``pip install 'mtlens[nlp]'``).

Default hyperparameters: Adam, lr 2e-5, batch 32 per task, 3 epochs (eval batch 256).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from annotated_types import MinLen
from pydantic import PositiveInt
from torch import Tensor, nn

from mtlens.data.glue import GLUE_DATA, GLUE_TASKS, GlueTaskName, glue_file, read_glue_task, tokenize_pairs
from mtlens.data.registry import DatasetMissingError, require_dataset
from mtlens.errors import MtlensError
from mtlens.settings import register_setting
from mtlens.settings.base import Defaults, Fraction, Setting, Split, TaskData, random_partition
from mtlens.tasks import Task, classification_task, regression_task
from mtlens.tasks.metrics import binary_f1, matthews, pearson, spearman

DATA_SEED = 0
"""Seed of the fixed validation carve-out and of the ``max_train`` subsample."""


class _NeedsTransformers(MtlensError):
    """The GLUE setting needs the optional ``transformers`` dependency or model files."""


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise _NeedsTransformers(
            "the 'glue' setting needs the transformers library: pip install 'mtlens[nlp]'"
        ) from None
    return transformers


def _load(what: str, loader: Any, model_name: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(model_name, local_files_only=True, **kwargs)
    except OSError as err:
        raise _NeedsTransformers(
            f"cannot load the {what} of {model_name!r} from the local Hugging Face cache ({err}). Fetch it once "
            f'with `huggingface-cli download {model_name}` (or python -c "import transformers as t; '
            f"t.AutoModel.from_pretrained('{model_name}'); t.AutoTokenizer.from_pretrained('{model_name}')\") on a "
            f"machine with internet access, or set model_name to a local directory."
        ) from None


class TransformerEncoder(nn.Module):
    """``(N, 2, L)`` (ids, mask) -> hidden state of the first token ``(N, hidden_size)``.

    Columns after the longest sequence of the batch are dropped before the forward pass
    (they are padding everywhere, so the result is unchanged).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        ids, mask = x[:, 0], x[:, 1]
        length = max(int(mask.sum(dim=1).max()), 1)
        hidden = self.model(input_ids=ids[:, :length], attention_mask=mask[:, :length]).last_hidden_state
        return hidden[:, 0]


def roberta_head(out_features: int, dropout: float = 0.1):
    """RoBERTa's classification head on the ``<s>`` feature: dropout, dense, tanh, dropout, linear."""
    return lambda dim: nn.Sequential(
        nn.Dropout(dropout), nn.Linear(dim, dim), nn.Tanh(), nn.Dropout(dropout), nn.Linear(dim, out_features)
    )


def glue_task(name: str) -> Task:
    """The :class:`Task` of GLUE task ``name`` with its standard metrics."""
    spec = GLUE_TASKS[name]
    if spec.labels is None:
        task = regression_task(name, 1, head=roberta_head(1))
        return replace(
            task,
            corpus_metrics={"pearson": pearson(), "spearman": spearman()},
            lower_is_better={**task.lower_is_better, "pearson": False, "spearman": False},
            selection_metric="pearson",
        )
    task = classification_task(name, len(spec.labels), head=roberta_head(len(spec.labels)))
    extra = {"cola": {"matthews": matthews(2)}, "mrpc": {"f1": binary_f1()}, "qqp": {"f1": binary_f1()}}.get(name, {})
    if not extra:
        return task
    return replace(
        task,
        corpus_metrics=extra,
        lower_is_better={**task.lower_is_better, **{m: False for m in extra}},
        selection_metric=next(iter(extra)),
    )


@register_setting("glue", data=("glue",))
def glue(
    root: str | None = None,
    tasks: Annotated[tuple[GlueTaskName, ...], MinLen(1)] = get_args(GlueTaskName),
    model_name: str = "roberta-base",
    pretrained: bool = True,
    max_length: PositiveInt = 128,
    val_fraction: Fraction = 0.1,
    max_val: PositiveInt = 2000,
    max_train: PositiveInt | None = None,
    mnli_test: Literal["matched", "mismatched"] = "matched",
) -> Setting:
    """GLUE on a shared RoBERTa encoder (see the module doc)."""
    dev_of = {name: "dev_" + mnli_test if name == "mnli" else "dev" for name in tasks}
    used = [glue_file(name, split) for name, dev in dev_of.items() for split in ("train", dev)]
    path = Path(root) if root is not None else require_dataset(GLUE_DATA.name, files=used)  # only the tasks selected
    transformers = _transformers()
    tokenizer = _load("tokenizer", transformers.AutoTokenizer, model_name)
    config = _load("config", transformers.AutoConfig, model_name)
    data: dict[str, TaskData] = {}
    for name, dev in dev_of.items():
        try:
            train_all, test = read_glue_task(path, name, "train"), read_glue_task(path, name, dev)
        except FileNotFoundError as err:
            raise DatasetMissingError(f"GLUE file missing: {err.filename}. {GLUE_DATA.instructions}") from None
        n_val = min(max_val, int(round(val_fraction * len(train_all))))
        n_train = len(train_all) - n_val if max_train is None else min(max_train, len(train_all) - n_val)
        val_rows, train_rows = random_partition(len(train_all), [n_val, n_train], seed=DATA_SEED)
        inputs = tokenize_pairs(tokenizer, train_all.texts, max_length)
        test_inputs = tokenize_pairs(tokenizer, test.texts, max_length)
        data[name] = TaskData(
            f"glue/{name}",
            train=Split(inputs[train_rows], train_all.labels[train_rows]),
            val=Split(inputs[val_rows], train_all.labels[val_rows]),
            test=Split(test_inputs, test.labels),
        )

    def encoder() -> nn.Module:
        # The pooler is not used (features are the <s> hidden state), so it is not built.
        if pretrained:
            return TransformerEncoder(_load("weights", transformers.AutoModel, model_name, add_pooling_layer=False))
        return TransformerEncoder(transformers.AutoModel.from_config(config, add_pooling_layer=False))

    return Setting(
        name="glue",
        tasks=tuple(glue_task(name) for name in tasks),
        data=data,
        encoder=encoder,
        feature_dim=int(config.hidden_size),
        defaults=Defaults(lr=2e-5, batch_size=32, epochs=3, eval_batch_size=256),
        description=(
            f"GLUE tasks {list(tasks)} on a shared {model_name} encoder; test = official dev "
            f"(MNLI {mnli_test}), val = {val_fraction:.0%} of train (at most {max_val})."
        ),
    )

"""The Lightning and Hugging Face callbacks: STL and MTL runs of a library's own Trainer written as
mtlens runs, turned by `mtlens report` into a report with the gap figures and probe rows.

Sized for the default test run (a few seconds per library besides importing it): one seed, 8 steps,
two probes (coherence; conflict, which needs the update direction), and the garbage collector's
existing objects frozen while the libraries train (accelerate runs ``gc.collect()`` at every
``train()``, a second or more each with the test session's heap)."""

from __future__ import annotations

import gc
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mtlens import Recorder, RecorderProbes, RunStore
from mtlens.cli import main

TASKS = ("a", "b")
SPLITS = ("train", "val", "test")
N_TRAIN, BATCH, EPOCHS = 64, 16, 2
STEPS_PER_EPOCH = N_TRAIN // BATCH


class Examples(Dataset):
    """``{"x": (6,), "a": label, "b": label}`` rows of a synthetic two-task problem (fixed seed per split)."""

    def __init__(self, n: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 6, generator=generator)
        weights = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(99))
        self.y = {t: (self.x @ weights[k]).argmax(1) for k, t in enumerate(TASKS)}

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], **{t: y[i] for t, y in self.y.items()}}

    def batch(self, n: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[:n], **{t: y[:n] for t, y in self.y.items()}}


TRAIN, VAL, TEST = Examples(N_TRAIN, 0), Examples(32, 1), Examples(32, 2)


PROBE_STEPS = [0, STEPS_PER_EPOCH, EPOCHS * STEPS_PER_EPOCH]


def probes_for(model: nn.Module, trunk: str, losses, batch_size: int = BATCH) -> RecorderProbes:
    return RecorderProbes(
        model=model,
        shared=[n for n, _ in model.named_parameters() if n.startswith(trunk)],
        losses=losses,
        sample=TRAIN.batch(16),
        steps=PROBE_STEPS,
        probes=("coherence", "conflict"),
        batch_size=batch_size,
    )


def shared_grad_norm(model: nn.Module, trunk: str) -> float:
    """``||d||`` of the gradients in the trunk's ``.grad`` (what the optimizer is about to apply)."""
    grads = [p.grad.flatten() for n, p in model.named_parameters() if n.startswith(trunk) and p.grad is not None]
    return float(torch.cat(grads).norm())


@contextmanager
def frozen_gc() -> Iterator[None]:
    """Leave the objects that exist now out of garbage collections (see the module docstring)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def check_rows(store: RunStore, update_norms: dict[int, float]) -> None:
    """Three finished runs evaluated before training and at every epoch end (the gap at equal
    training loss needs STL and MTL curves over a common range: both start from the same init), the
    probes scheduled, no duplicated row; the MTL run's
    update direction at each probe step after 0 is the gradient the optimizer applied at that step
    (``update_norms``: its norm, taken by the test's own callback before the optimizer step)."""
    runs = store.runs()
    assert len(runs) == 3 and set(runs["state"]) == {"finished"}
    rows = store.trajectories()
    for run_id, frame in rows.groupby("run_id"):
        for split in SPLITS:
            evaluated = frame[frame["quantity"] == f"{split}/loss"]["step"]
            assert sorted(evaluated.unique()) == [STEPS_PER_EPOCH * e for e in range(EPOCHS + 1)], run_id
        assert sorted(frame["step"][frame["quantity"] == "probe/grad_coherence"].unique()) == PROBE_STEPS
        assert not frame.duplicated(["task", "step", "quantity"]).any()
    mtl = rows[rows["mode"] == "mtl"]
    recorded = mtl[mtl["quantity"] == "probe/update_norm"].set_index("step")["value"]
    assert sorted(recorded.index) == PROBE_STEPS[1:]
    for step in PROBE_STEPS[1:]:
        assert recorded[step] == pytest.approx(update_norms[step], rel=1e-5), step
    cosines = mtl[mtl["quantity"] == "probe/update_cosine"]
    assert sorted(cosines["task"]) == sorted(TASKS * len(PROBE_STEPS[1:]))
    assert cosines["value"].between(-1, 1).all() and (cosines["value"] > 0).any()


def check_report(store: RunStore, out) -> None:
    assert main(["report", "--store", str(store.root), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    for task in TASKS:
        assert f'id="fig-gap_{store.runs()["setting"].iloc[0]}_sum_{task}"' in html
    assert "What did the probes see?" in html and 'id="fig-probes_' in html
    assert len(pd.read_csv(out / "tables" / "transfer.csv")) == 2


@pytest.fixture(scope="module")
def lightning_store(tmp_path_factory) -> tuple[RunStore, dict[int, float]]:
    """STL a, STL b and MTL runs of a Lightning ``Trainer``, recorded; the MTL run's update norms.
    Batches of ``BATCH / 2`` with two accumulated per optimizer step: the probes run once per step,
    with the accumulated gradient."""
    tmp_path = tmp_path_factory.mktemp("lightning")
    pl = pytest.importorskip("lightning.pytorch", reason="the `lightning` extra is part of the test extra")
    from mtlens.integrations.lightning import RecorderCallback

    class TwoTaskModule(pl.LightningModule):
        def __init__(self, tasks):
            super().__init__()
            self.trunk = nn.Sequential(nn.Linear(6, 16), nn.Tanh())
            self.heads = nn.ModuleDict({t: nn.Linear(16, 3) for t in tasks})

        def losses(self, batch):
            z = self.trunk(batch["x"])
            return {t: F.cross_entropy(head(z), batch[t], reduction="none") for t, head in self.heads.items()}

        def training_step(self, batch, batch_idx):
            return sum(loss.mean() for loss in self.losses(batch).values())

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            for task, loss in self.losses(batch).items():
                self.log(f"{SPLITS[dataloader_idx]}/{task}/loss", loss.mean(), add_dataloader_idx=False)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.02)

    class UpdateNorms(pl.Callback):
        def __init__(self):
            self.norms: dict[int, float] = {}

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.norms[trainer.global_step + 1] = shared_grad_norm(pl_module, "trunk.")

    store = RunStore(tmp_path / "store")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    for tasks in (["a"], ["b"], ["a", "b"]):
        torch.manual_seed(0)
        module = TwoTaskModule(tasks)
        probes = probes_for(module, "trunk.", module.losses, batch_size=BATCH // 2)
        with Recorder(
            store,
            "lightning_toy",
            tasks,
            seed=0,
            steps_per_epoch=STEPS_PER_EPOCH,
            hyperparameters={"lr": 0.02},
            probes=probes,
        ) as rec:
            update_norms = UpdateNorms()
            trainer = pl.Trainer(
                max_epochs=EPOCHS,
                accelerator="cpu",
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                accumulate_grad_batches=2,
                callbacks=[RecorderCallback(rec), update_norms],
            )
            evaluation = [DataLoader(d, batch_size=32) for d in (Examples(N_TRAIN, 0), VAL, TEST)]
            with warnings.catch_warnings(), frozen_gc():
                warnings.simplefilter("ignore")
                trainer.validate(module, evaluation)  # step 0
                trainer.fit(module, DataLoader(TRAIN, batch_size=BATCH // 2, shuffle=True), evaluation)
    return store, update_norms.norms  # those of the last (MTL) run


@pytest.fixture(scope="module")
def hf_store(tmp_path_factory) -> tuple[RunStore, dict[int, float]]:
    """STL a, STL b and MTL runs of a Hugging Face ``Trainer`` on a tiny random BERT, recorded; the MTL
    run's update norms."""
    tmp_path = tmp_path_factory.mktemp("hf")
    transformers = pytest.importorskip("transformers")
    from mtlens.integrations.huggingface import RecorderTrainerCallback

    class TinyBertTwoTasks(nn.Module):
        """A randomly initialized one-layer BERT (no download) on 6 tokens, one linear head per task."""

        def __init__(self, tasks):
            super().__init__()
            config = transformers.BertConfig(
                vocab_size=16,
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=16,
                max_position_embeddings=8,
                attn_implementation="eager",
            )
            self.bert = transformers.BertModel(config, add_pooling_layer=False)
            self.heads = nn.ModuleDict({t: nn.Linear(16, 3) for t in tasks})

        def per_example(self, x, labels):
            tokens = (x.sigmoid() * 15).long()
            z = self.bert(input_ids=tokens).last_hidden_state[:, 0]
            logits = {t: head(z) for t, head in self.heads.items()}
            return logits, {t: F.cross_entropy(logits[t], labels[t], reduction="none") for t in self.heads}

        def forward(self, x, a=None, b=None):
            logits, losses = self.per_example(x, {"a": a, "b": b})
            return {"loss": sum(loss.mean() for loss in losses.values()), **logits}

    def per_task_losses(prediction):
        logits = prediction.predictions if isinstance(prediction.predictions, tuple) else (prediction.predictions,)
        labels = prediction.label_ids if isinstance(prediction.label_ids, tuple) else (prediction.label_ids,)
        return {
            f"{t}/loss": F.cross_entropy(torch.as_tensor(logit), torch.as_tensor(y)).item()
            for t, logit, y in zip(current_tasks, logits, labels)
        }

    class UpdateNorms(transformers.TrainerCallback):
        def __init__(self):
            self.norms: dict[int, float] = {}

        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            self.norms[state.global_step + 1] = shared_grad_norm(model, "bert.")

    store = RunStore(tmp_path / "store")
    transformers.logging.set_verbosity_error()
    for current_tasks in (["a"], ["b"], ["a", "b"]):
        torch.manual_seed(0)
        model = TinyBertTwoTasks(current_tasks)
        probes = probes_for(model, "bert.", lambda batch, m=model: m.per_example(batch["x"], batch)[1])
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "hf"),
            per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=32,
            num_train_epochs=EPOCHS,
            learning_rate=0.01,
            eval_strategy="epoch",
            save_strategy="no",
            report_to=[],
            label_names=list(current_tasks),
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
        )
        with Recorder(
            store,
            "hf_toy",
            current_tasks,
            seed=0,
            steps_per_epoch=STEPS_PER_EPOCH,
            hyperparameters={"lr": 0.01},
            probes=probes,
        ) as rec:
            update_norms = UpdateNorms()
            trainer = transformers.Trainer(
                model=model,
                args=args,
                train_dataset=TRAIN,
                compute_metrics=per_task_losses,
                eval_dataset={"train": Examples(N_TRAIN, 0), "val": VAL, "test": TEST},
                callbacks=[RecorderTrainerCallback(rec), update_norms],
            )
            with warnings.catch_warnings(), frozen_gc():
                warnings.simplefilter("ignore")
                trainer.evaluate()  # step 0
                trainer.train()
    return store, update_norms.norms  # those of the last (MTL) run


@pytest.mark.parametrize("which", ["lightning_store", "hf_store"])
def test_library_trainer_runs_are_recorded_and_reported_with_gap_figures_and_probes(which, request, tmp_path):
    store, update_norms = request.getfixturevalue(which)
    check_rows(store, update_norms)
    check_report(store, tmp_path / "report")


@pytest.mark.parametrize(
    ("module", "library", "extra"),
    [
        ("mtlens.integrations.lightning", "lightning", "lightning"),
        ("mtlens.integrations.huggingface", "transformers", "hf"),
    ],
)
def test_a_callback_without_its_library_names_the_extra_to_install(module, library, extra, monkeypatch):
    """Importing a callback whose library is not installed says which extra installs it (a bare
    ModuleNotFoundError named only the library), and is still a ModuleNotFoundError."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, library, None)  # as if not installed: importing it raises
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ModuleNotFoundError, match=rf"pip install 'mtlens\[{extra}\]'") as info:
        importlib.import_module(module)
    assert info.value.name.split(".")[0] == library

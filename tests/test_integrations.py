"""The Lightning and Hugging Face callbacks: STL and MTL runs of a library's own Trainer written as
mtlens runs, turned by `mtlens report` into a report with the gap figures and probe rows."""

from __future__ import annotations

import logging
import warnings

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
N_TRAIN, BATCH, EPOCHS = 64, 16, 4


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


def probes_for(model: nn.Module, trunk: str, losses) -> RecorderProbes:
    steps_per_epoch = N_TRAIN // BATCH
    return RecorderProbes(
        model=model,
        shared=[n for n, _ in model.named_parameters() if n.startswith(trunk)],
        losses=losses,
        sample=TRAIN.batch(32),
        steps=[0, steps_per_epoch, EPOCHS * steps_per_epoch],
        probes=("coherence", "sharpness_sam", "conflict"),
        batch_size=BATCH,
    )


def check_rows(store: RunStore, n_probe_steps: int) -> None:
    runs = store.runs()
    assert len(runs) == 3 and set(runs["state"]) == {"finished"}
    rows = store.trajectories()
    for run_id, frame in rows.groupby("run_id"):
        for split in SPLITS:
            evaluated = frame[frame["quantity"] == f"{split}/loss"]["step"]
            assert sorted(evaluated.unique()) == [(N_TRAIN // BATCH) * e for e in range(1, EPOCHS + 1)], run_id
        assert frame["step"][frame["quantity"] == "probe/grad_coherence"].nunique() == n_probe_steps
        assert not frame.duplicated(["task", "step", "quantity"]).any()


def check_report(store: RunStore, out) -> None:
    assert main(["report", "--store", str(store.root), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    for task in TASKS:
        assert f'id="fig-gap_{store.runs()["setting"].iloc[0]}_sum_{task}"' in html
    assert "What did the probes see?" in html and 'id="fig-probes_' in html
    assert len(pd.read_csv(out / "tables" / "transfer.csv")) == 2


@pytest.fixture(scope="module")
def lightning_store(tmp_path_factory) -> RunStore:
    """STL a, STL b and MTL runs of a Lightning ``Trainer``, recorded."""
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

    store = RunStore(tmp_path / "store")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    for tasks in (["a"], ["b"], ["a", "b"]):
        torch.manual_seed(0)
        module = TwoTaskModule(tasks)
        probes = probes_for(module, "trunk.", module.losses)
        with Recorder(
            store,
            "lightning_toy",
            tasks,
            seed=0,
            steps_per_epoch=N_TRAIN // BATCH,
            hyperparameters={"lr": 0.02},
            probes=probes,
        ) as rec:
            trainer = pl.Trainer(
                max_epochs=EPOCHS,
                accelerator="cpu",
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                callbacks=[RecorderCallback(rec)],
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer.fit(
                    module,
                    DataLoader(TRAIN, batch_size=BATCH, shuffle=True),
                    [DataLoader(d, batch_size=32) for d in (Examples(N_TRAIN, 0), VAL, TEST)],
                )
    return store


@pytest.fixture(scope="module")
def hf_store(tmp_path_factory) -> RunStore:
    """STL a, STL b and MTL runs of a Hugging Face ``Trainer`` on a tiny random BERT, recorded."""
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
            steps_per_epoch=N_TRAIN // BATCH,
            hyperparameters={"lr": 0.01},
            probes=probes,
        ) as rec:
            trainer = transformers.Trainer(
                model=model,
                args=args,
                train_dataset=TRAIN,
                compute_metrics=per_task_losses,
                eval_dataset={"train": Examples(N_TRAIN, 0), "val": VAL, "test": TEST},
                callbacks=[RecorderTrainerCallback(rec)],
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer.train()
    return store


def test_lightning_trainer_runs_are_recorded(lightning_store):
    check_rows(lightning_store, n_probe_steps=3)


def test_huggingface_trainer_runs_are_recorded(hf_store):
    check_rows(hf_store, n_probe_steps=3)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["lightning_store", "hf_store"])
def test_recorded_library_runs_make_a_report_with_gap_figures_and_probes(which, request, tmp_path):
    """`mtlens report` on the recorded store (a minute each on a loaded 2-core machine: figures)."""
    check_report(request.getfixturevalue(which), tmp_path / "report")

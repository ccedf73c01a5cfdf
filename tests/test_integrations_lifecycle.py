"""The Lightning and Hugging Face callbacks through a run's life: resuming after the README's
"evaluate first" pattern, a kill right after a library checkpoint, Ctrl-C and SIGTERM, a diverging
loss, and metric keys of several validation loaders.  One task, 4 steps per epoch, a linear model."""

from __future__ import annotations

import logging
import shutil
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mtlens import Recorder, RunStore
from mtlens.training.recorder import UnrecordedMetricsWarning

N_TRAIN, BATCH = 64, 16
STEPS_PER_EPOCH = N_TRAIN // BATCH
SPLITS = ("train", "val", "test")


class Examples(Dataset):
    """``{"x": (6,), "a": label}`` rows of a synthetic task (fixed seed per split)."""

    def __init__(self, n: int, seed: int):
        self.x = torch.randn(n, 6, generator=torch.Generator().manual_seed(seed))
        self.a = (self.x @ torch.randn(6, 3, generator=torch.Generator().manual_seed(99))).argmax(1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "a": self.a[i]}


EVAL = [Examples(N_TRAIN, 0), Examples(32, 1), Examples(32, 2)]


def recorder(root) -> Recorder:
    return Recorder(root, "toy", ["a"], seed=0, steps_per_epoch=STEPS_PER_EPOCH, hyperparameters={"lr": 0.05})


@contextmanager
def quiet() -> Iterator[None]:
    """Library warnings off; SIGINT's handler restored (Lightning ignores SIGINT after a Ctrl-C)."""
    handler = signal.getsignal(signal.SIGINT)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="lightning|transformers|torch")
            yield
    finally:
        signal.signal(signal.SIGINT, handler)


def recorded_steps(store: RunStore, run_id: str) -> list[int]:
    return sorted(set(store.trajectory(run_id)["step"]))


# -- Lightning -------------------------------------------------------------------------------
@pytest.fixture
def lightning():
    pl = pytest.importorskip("lightning.pytorch", reason="the `lightning` extra is part of the test extra")
    from mtlens.integrations.lightning import RecorderCallback

    class Module(pl.LightningModule):
        def __init__(self, nan_from: int | None = None, suffixed: bool = False, same_key: bool = False):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Linear(6, 3)
            self.nan_from, self.suffixed, self.same_key = nan_from, suffixed, same_key

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self.net(batch["x"]), batch["a"])

        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            loss = F.cross_entropy(self.net(batch["x"]), batch["a"])
            if self.nan_from is not None and self.global_step >= self.nan_from:
                loss = loss * float("nan")
            split = "val" if self.same_key else SPLITS[dataloader_idx]
            self.log(f"{split}/a/loss", loss, add_dataloader_idx=self.suffixed or self.same_key)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    def run(root, module, epochs=3, callbacks=(), ckpt_dir=None, resume=False, validate_first=True):
        loaders = [DataLoader(d, batch_size=32) for d in EVAL]
        train = DataLoader(
            Examples(N_TRAIN, 0), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
        checkpoints = [pl.callbacks.ModelCheckpoint(ckpt_dir, save_last=True)] if ckpt_dir else []
        with quiet(), recorder(root) as rec:
            trainer = pl.Trainer(
                max_epochs=epochs,
                accelerator="cpu",
                logger=False,
                enable_checkpointing=bool(ckpt_dir),
                enable_progress_bar=False,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                callbacks=[RecorderCallback(rec), *checkpoints, *callbacks],
            )
            if validate_first:
                trainer.validate(module, loaders, verbose=False)  # step 0
            trainer.fit(module, train, loaders, ckpt_path=f"{ckpt_dir}/last.ckpt" if resume else None)
        return rec

    return pl, Module, run


def test_lightning_nan_loss_ends_the_run_diverged_and_stops_training(lightning, tmp_path):
    _, Module, run = lightning
    with pytest.warns(RuntimeWarning, match="non-finite loss at step 8"):
        rec = run(tmp_path / "store", Module(nan_from=8), epochs=4)
    store = RunStore(tmp_path / "store")
    assert store.status(rec.run_id)["state"] == "diverged" and store.status(rec.run_id)["step"] == 8
    assert recorded_steps(store, rec.run_id) == [0, 4]


def test_lightning_resume_after_validating_first_keeps_the_rows_up_to_the_checkpoint(lightning, tmp_path):
    """README pattern: ``validate`` (step 0), then ``fit(ckpt_path=...)``: the step-0 rows of the new
    session must not discard the rows up to the checkpoint it resumes from (step 8)."""
    pl, Module, run = lightning

    class Crash(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 10:
                raise RuntimeError("crash at step 10")

    root, ckpt = tmp_path / "store", tmp_path / "ckpt"
    with pytest.raises(RuntimeError, match="crash"):
        run(root, Module(), callbacks=[Crash()], ckpt_dir=ckpt)
    store = RunStore(root)
    first = store.trajectory(store.runs()["run_id"].iloc[0]).set_index(["step", "quantity"])["value"]
    assert sorted(set(first.index.get_level_values("step"))) == [0, 4, 8]
    rec = run(root, Module(), ckpt_dir=ckpt, resume=True)
    assert store.status(rec.run_id)["state"] == "finished"
    assert recorded_steps(store, rec.run_id) == [0, 4, 8, 12]
    kept = store.trajectory(rec.run_id).set_index(["step", "quantity"])["value"]
    assert kept.loc[[4, 8]].equals(first.loc[[4, 8]])


@pytest.mark.parametrize("interruption", ["KeyboardInterrupt", "SIGTERMException"])
def test_lightning_ctrl_c_or_sigterm_leaves_the_run_interrupted_not_failed(lightning, tmp_path, interruption):
    pl, Module, run = lightning
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    class Interrupt(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 6:
                raise KeyboardInterrupt if interruption == "KeyboardInterrupt" else SIGTERMException()

    with pytest.raises(SystemExit):  # how Lightning ends the process on either
        rec = run(tmp_path / "store", Module(), callbacks=[Interrupt()])
    store = RunStore(tmp_path / "store")
    (state,) = store.runs()["state"]
    assert state == "interrupted"
    (run_id,) = store.runs()["run_id"]
    assert recorded_steps(store, run_id) == [0, 4]
    rec = run(tmp_path / "store", Module(), validate_first=True)  # lock released: rerunning works
    assert store.status(rec.run_id)["state"] == "finished"


def test_lightning_keys_with_a_dataloader_suffix_are_recorded(lightning, tmp_path):
    """Lightning's default ``add_dataloader_idx=True`` appends ``/dataloader_idx_N`` to the keys of
    several validation loaders: the suffix is dropped, the rows recorded."""
    _, Module, run = lightning
    rec = run(tmp_path / "store", Module(suffixed=True), epochs=2)
    rows = RunStore(tmp_path / "store").trajectory(rec.run_id)
    assert sorted(set(rows["quantity"])) == ["test/loss", "train/loss", "val/loss"]
    assert sorted(set(rows["step"])) == [0, 4, 8]


def test_lightning_keys_logged_by_several_loaders_are_refused_loudly(lightning, tmp_path):
    _, Module, run = lightning
    with pytest.warns(UnrecordedMetricsWarning) as caught:
        rec = run(tmp_path / "store", Module(same_key=True), epochs=1)
    messages = " ".join(str(w.message) for w in caught)
    assert "several loaders" in messages and "no rows recorded" in messages
    assert RunStore(tmp_path / "store").trajectory(rec.run_id).empty


# -- Hugging Face ----------------------------------------------------------------------------
@pytest.fixture
def hf():
    transformers = pytest.importorskip("transformers")
    from mtlens.integrations.huggingface import RecorderTrainerCallback

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Linear(6, 3)

        def forward(self, x, a=None):
            logits = self.net(x)
            return {"loss": F.cross_entropy(logits, a), "logits": logits}

    def per_task_losses(prediction):
        logits, labels = torch.as_tensor(prediction.predictions), torch.as_tensor(prediction.label_ids)
        return {"a/loss": F.cross_entropy(logits, labels).item()}

    def run(root, out, callbacks=(), resume=None):
        args = transformers.TrainingArguments(
            output_dir=str(out),
            per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=32,
            num_train_epochs=3,
            learning_rate=0.05,
            eval_strategy="epoch",
            save_strategy="epoch",
            report_to=[],
            label_names=["a"],
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
        )
        transformers.logging.set_verbosity_error()
        with quiet(), recorder(root) as rec:
            trainer = transformers.Trainer(
                model=Model(),
                args=args,
                train_dataset=Examples(N_TRAIN, 0),
                compute_metrics=per_task_losses,
                eval_dataset=dict(zip(SPLITS, EVAL)),
                callbacks=list(callbacks),
            )
            trainer.add_callback(RecorderTrainerCallback(rec))  # after the test's callbacks
            trainer.evaluate()  # step 0
            trainer.train(resume_from_checkpoint=resume)
        return rec

    return transformers, run


def test_hf_resume_after_evaluating_first_keeps_the_rows_up_to_the_checkpoint(hf, tmp_path):
    transformers, run = hf

    class Crash(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 10:
                raise RuntimeError("crash at step 10")

    root, out = tmp_path / "store", tmp_path / "out"
    with pytest.raises(RuntimeError, match="crash"):
        run(root, out, callbacks=[Crash()])
    rec = run(root, out, resume=True)
    store = RunStore(root)
    assert store.status(rec.run_id)["state"] == "finished"
    assert recorded_steps(store, rec.run_id) == [0, 4, 8, 12]


def test_hf_rows_are_on_disk_before_the_trainer_writes_its_checkpoint(hf, tmp_path):
    """A kill right after the ``Trainer`` wrote ``checkpoint-8`` (the store copied as a kill would leave
    it, before the recorder's ``on_save``) resumes with the rows up to step 8."""
    transformers, run = hf
    root, out, killed = tmp_path / "store", tmp_path / "out", tmp_path / "killed"

    class Snapshot(transformers.TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 8:
                shutil.copytree(root, killed)

    rec = run(root, out, callbacks=[Snapshot()])
    snapshot = RunStore(killed)
    assert snapshot.part_steps(rec.run_id) == [0, 4, 8]
    assert snapshot.runs()["state"].tolist() == ["interrupted"]

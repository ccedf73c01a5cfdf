"""A PyTorch Lightning callback that records a ``LightningModule``'s training with a
:class:`~mtlens.training.recorder.Recorder` (extra ``lightning``: ``lightning>=2.2``)::

    with Recorder(store, "my_setting", ["a", "b"], seed=0, steps_per_epoch=len(loader)) as rec:
        Trainer(max_epochs=5, callbacks=[RecorderCallback(rec)]).fit(module, loader, val_loaders)

The module logs ``self.log("<split>/<task>/<metric>", value, add_dataloader_idx=False)`` in its
``validation_step`` (e.g. with three validation dataloaders: a fixed training subset, the
validation split and the test split).  At the end of every validation run (not the sanity check)
the callback records those of ``trainer.callback_metrics`` at ``trainer.global_step``
(:meth:`~mtlens.training.recorder.Recorder.log_metrics`); a ``trainer.validate(...)`` before
``fit`` records step 0.  After every optimizer step it calls ``rec.step(global_step)``, which runs
the recorder's probes when they are due (``rec.step(0)`` when training starts): at the end of the
batch whose optimizer step it was (with ``accumulate_grad_batches``, not again at the batches that
only accumulate), when ``.grad`` still holds the gradients the step applied (Lightning clears them
before the next backward), so the conflict probe's ``update_cosine``/``update_norm`` are recorded.
A fit resumed from a Lightning checkpoint resumes the recorded run at the checkpoint's step (later
rows are discarded); rows are written whenever Lightning saves a checkpoint.  The ``with`` block
ends the run: finished, or failed on an exception (Ctrl-C and ``kill``, which Lightning turns into
``SystemExit``, leave it interrupted: resumable); a non-finite loss ends it diverged (the
Recorder's rule) and stops the ``Trainer``.
"""

from __future__ import annotations

from typing import Any

try:
    import lightning.pytorch as pl
    from lightning.pytorch.utilities.exceptions import SIGTERMException
except ImportError as err:
    raise ModuleNotFoundError(
        f"mtlens.integrations.lightning needs Lightning ({err.name} is missing): pip install 'mtlens[lightning]'",
        name=err.name,
    ) from None

from mtlens.training.recorder import Recorder


class RecorderCallback(pl.Callback):
    """Feeds ``recorder`` from a Lightning ``Trainer``; see the module docstring."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self._stepped = -1  # the last step passed to the recorder

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step > 0:
            self.recorder.resume_from(trainer.global_step)
        else:
            self.recorder.step(0)
        self._stepped = trainer.global_step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step != self._stepped:  # this batch made an optimizer step
            self._stepped = trainer.global_step
            self.recorder.step(trainer.global_step)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.recorder.log_metrics(trainer.global_step, {k: float(v) for k, v in trainer.callback_metrics.items()})
            if self.recorder.diverged is not None:  # a non-finite loss ended the run diverged: stop training
                trainer.should_stop = True

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Lightning turns Ctrl-C into SystemExit(1) and SIGTERM into SIGTERMException after this hook: the
        # session ends interrupted here (rows written, lock released), not failed by the ``with`` block.
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            self.recorder.interrupt()

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.recorder.flush()

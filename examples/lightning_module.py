"""Record a PyTorch Lightning training with mtlens: STL per task and MTL of one LightningModule, paired.

Two tasks on scikit-learn's bundled 8x8 digits (no download): which digit (10-way) and whether it is
at least 5 (2-way), one shared trunk and a head per task.  The fixed training subset, the validation
and the test split are the three validation loaders, so every evaluation records what the report
reads.  Runs in seconds on a CPU; then `mtlens report --store runs/lightning --out reports/lightning`.
`tests/test_examples.py` runs this file; the README's Lightning snippet is an excerpt of it.
"""

import logging
import warnings

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from mtlens import Recorder
from mtlens.integrations.lightning import RecorderCallback

SPLITS = ("train", "val", "test")
CLASSES = {"digit": 10, "high": 2}  # tasks and their classes
TASKS = tuple(CLASSES)
x, digit = (torch.as_tensor(a) for a in load_digits(return_X_y=True))
x, labels = (x / 16).float(), {"digit": digit, "high": (digit >= 5).long()}
cut = {"train": slice(0, 256), "val": slice(256, 384), "test": slice(384, 512)}  # a small subset: seconds
data = {split: TensorDataset(x[rows], *(labels[t][rows] for t in TASKS)) for split, rows in cut.items()}
eval_loaders = [DataLoader(data[split], batch_size=256) for split in SPLITS]  # train subset, val, test


def seeded(seed, part):  # each part from its own seed: STL and MTL start from the same trunk and heads
    torch.manual_seed(seed)
    return part()


class TwoTasks(pl.LightningModule):
    def __init__(self, tasks, seed):
        super().__init__()
        self.trunk = seeded(seed, lambda: torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()))
        heads = {t: seeded(seed + 1 + TASKS.index(t), lambda t=t: torch.nn.Linear(32, CLASSES[t])) for t in tasks}
        self.heads = torch.nn.ModuleDict(heads)

    def losses(self, batch):  # {task: (n,) per-example losses}; batch = (x, digit, high)
        z, targets = self.trunk(batch[0]), dict(zip(TASKS, batch[1:]))
        return {t: torch.nn.functional.cross_entropy(h(z), targets[t], reduction="none") for t, h in self.heads.items()}

    def training_step(self, batch, batch_idx):
        return sum(loss.mean() for loss in self.losses(batch).values())

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        for task, loss in self.losses(batch).items():
            self.log(f"{SPLITS[dataloader_idx]}/{task}/loss", loss.mean(), add_dataloader_idx=False)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="lightning")  # e.g. "the dataloader does not have many workers"
for tasks in (["digit"], ["high"], ["digit", "high"]):
    module = TwoTasks(tasks, seed=0)
    train_loader = DataLoader(data["train"], batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    rec = Recorder("runs/lightning", "digits_lightning", tasks, seed=0, steps_per_epoch=len(train_loader),
                   hyperparameters={"lr": 0.01, "batch_size": 32})  # fmt: skip
    if rec.done():  # recorded already: running this again trains only the runs left
        continue
    with rec:
        quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer = pl.Trainer(max_epochs=4, callbacks=[RecorderCallback(rec)], accelerator="cpu", **quiet)
        trainer.validate(module, eval_loaders, verbose=False)  # step 0: the common start of STL and MTL
        trainer.fit(module, train_loader, eval_loaders)

"""Record a Hugging Face `Trainer` with mtlens: STL per task and MTL of one model, paired, with probes.

Two tasks on scikit-learn's bundled 8x8 digits (no download): which digit (10-way) and whether it is
at least 5 (2-way), one shared trunk and a head per task.  The fixed training subset, the validation
and the test split are three named evaluation sets; `compute_metrics` returns each task's loss.  The
Trainer's default learning rate (5e-5) barely moves this model in a few epochs: 3e-2 trains it.  Runs in
seconds on a CPU; then `mtlens report --store runs/hf --out reports/hf`.
`tests/test_examples.py` runs this file; the README's Hugging Face snippet is an excerpt of it.
"""

import warnings

import torch
import transformers
from sklearn.datasets import load_digits
from transformers import Trainer, TrainingArguments

from mtlens import Recorder, RecorderProbes, probe_steps
from mtlens.integrations.huggingface import RecorderTrainerCallback

CLASSES = {"digit": 10, "high": 2}  # tasks and their classes
TASKS = tuple(CLASSES)
x, digit = (torch.as_tensor(a) for a in load_digits(return_X_y=True))
x, labels = (x / 16).float(), {"digit": digit, "high": (digit >= 5).long()}
cut = {"train": range(0, 256), "val": range(256, 384), "test": range(384, 512)}  # a small subset: seconds
data = {split: [{"x": x[i], **{t: labels[t][i] for t in TASKS}} for i in rows] for split, rows in cut.items()}
probe_batch = {"x": x[:64], **{t: labels[t][:64] for t in TASKS}}  # a fixed sample of training rows
batch_size, epochs = 32, 4
steps_per_epoch = len(data["train"]) // batch_size


def seeded(seed, part):  # each part from its own seed: STL and MTL start from the same trunk and heads
    torch.manual_seed(seed)
    return part()


class TwoTasks(torch.nn.Module):
    def __init__(self, tasks, seed):
        super().__init__()
        self.trunk = seeded(seed, lambda: torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()))
        heads = {t: seeded(seed + 1 + TASKS.index(t), lambda t=t: torch.nn.Linear(32, CLASSES[t])) for t in tasks}
        self.heads = torch.nn.ModuleDict(heads)

    def per_example_losses(self, batch):  # {task: (n,) per-example losses}, for the probes
        z = self.trunk(batch["x"])
        return {t: torch.nn.functional.cross_entropy(h(z), batch[t], reduction="none") for t, h in self.heads.items()}

    def forward(self, x, digit=None, high=None):  # -> {"loss": sum of task losses, task: logits, ...}
        z, targets = self.trunk(x), {"digit": digit, "high": high}
        logits = {t: h(z) for t, h in self.heads.items()}
        loss = sum(torch.nn.functional.cross_entropy(logits[t], targets[t]) for t in self.heads)
        return {"loss": loss, **logits}


def per_task_losses(prediction):  # predictions and label_ids: one array per task, in task order
    as_tuple = lambda a: a if isinstance(a, tuple) else (a,)  # noqa: E731
    return {f"{t}/loss": torch.nn.functional.cross_entropy(torch.as_tensor(p), torch.as_tensor(y)).item()
            for t, p, y in zip(tasks, as_tuple(prediction.predictions), as_tuple(prediction.label_ids))}  # fmt: skip


transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", module="transformers")
for tasks in (["digit"], ["high"], ["digit", "high"]):
    model = TwoTasks(tasks, seed=0)
    probes = RecorderProbes(model, shared=[n for n, _ in model.named_parameters() if n.startswith("trunk.")],
                            losses=model.per_example_losses, sample=probe_batch,
                            steps=probe_steps(epochs * steps_per_epoch, steps_per_epoch, first_epoch=0.5, growth=2),
                            probes=("coherence", "conflict"), batch_size=batch_size)  # fmt: skip
    args = TrainingArguments("runs/hf-trainer", num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                             learning_rate=3e-2, eval_strategy="epoch", save_strategy="no", label_names=tasks,
                             report_to=[], use_cpu=True, disable_tqdm=True, seed=0)  # fmt: skip
    rec = Recorder("runs/hf", "digits_hf", tasks, seed=0, steps_per_epoch=steps_per_epoch, probes=probes,
                   hyperparameters={"lr": 3e-2, "batch_size": batch_size})  # fmt: skip
    if rec.done():  # recorded already: running this again trains only the runs left
        continue
    with rec:
        trainer = Trainer(model, args, train_dataset=data["train"], eval_dataset=data, compute_metrics=per_task_losses,
                          callbacks=[RecorderTrainerCallback(rec)])  # fmt: skip
        trainer.remove_callback(transformers.PrinterCallback)  # no metrics printed at every evaluation
        trainer.evaluate()  # step 0: the common start of STL and MTL
        trainer.train()

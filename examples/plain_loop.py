"""Record a plain PyTorch training loop with mtlens's Recorder: STL per task and MTL, paired by seed.

Runs in seconds on a CPU (the bundled 8x8 digits, a small subset); then `mtlens report --store
runs/plain-loop --out reports/plain-loop`, or `mtlens.load("runs/plain-loop")` in a notebook.
`tests/test_examples.py` runs this file; the README's plain-loop snippet is an excerpt of it.
"""

# Record a plain PyTorch loop: STL per task and MTL, paired by seed.
import torch

from mtlens import BatchStream, Recorder, RunStore, build_model, evaluate_task, load_setting, train_eval_rows

setting = load_setting("digits_pair", n_train=256, n_val=64, n_test=64)
store, epochs, batch_size, lr = RunStore("runs/plain-loop"), 4, 32, 1e-2
steps_per_epoch = setting.steps_per_epoch(batch_size)


def evaluate(rec, model, tasks, step):  # train/loss on a fixed training subset, val and test: what the report reads
    for task in setting.select(tasks):
        data = setting.data[task.name]
        for split, rows in (("train", train_eval_rows(data.train, 256, task.name)), ("val", None), ("test", None)):
            rec.log(step, split, {task.name: evaluate_task(model, task, data.split(split), torch.device("cpu"), rows)})


for seed in (0, 1):
    for tasks in (["a"], ["b"], ["a", "b"]):
        rec = Recorder(store, "digits_pair", setting.select(tasks), seed, steps_per_epoch=steps_per_epoch,
                       hyperparameters={"lr": lr, "batch_size": batch_size, "epochs": epochs})  # fmt: skip
        if rec.done():  # complete already: after a crash, rerunning this program trains only the other runs
            continue
        model = build_model(setting.encoder, setting.feature_dim, setting.select(tasks), seed)  # seeded per part
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        batches = BatchStream(setting, tasks, batch_size, seed)  # a task's batches depend only on the seed
        with rec:
            evaluate(rec, model, tasks, 0)  # the common start of STL and MTL
            for step in range(1, epochs * steps_per_epoch + 1):
                losses = []
                for batch in batches.next().values():
                    outputs = model(batch.inputs, list(batch.targets))
                    losses += [setting.task(t).loss(outputs[t], y).mean() for t, y in batch.targets.items()]
                optimizer.zero_grad()
                torch.stack(losses).sum().backward()
                optimizer.step()
                if step % steps_per_epoch == 0:
                    evaluate(rec, model, tasks, step)
print(store.runs()[["run_id", "mode", "seed", "state"]])

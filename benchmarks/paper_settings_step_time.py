"""Time of one training step of each paper image setting on synthetic tensors of the right shape.

No dataset is read: each setting's encoder and heads are built as the setting builds them
and fed random inputs of its input shape, one batch per input source (multi-input
settings run the encoder once per task).  One step = forward, summed loss, backward and
an Adam update.  Printed: seconds per step (median of the timed steps after a warm-up),
the ratio to the demo setting ``mnist_pair`` measured in the same run, forward+backward
FLOPs per step (torch's FlopCounterMode), and the *extrapolated* epoch time
``steps_per_epoch * seconds_per_step``.  Steps of CIFAR-100 (20 tasks x 64 images) and
CelebA (ResNet-18, 256 images) at their default batch sizes are too slow for a quick run on
CPU: they are timed at a batch of ``--small-batch`` and scaled linearly to the default
batch (an estimate, marked ``*``); ``--small-batch`` at least the default batch (e.g. 256 on a
GPU) times every setting at its own batch.  Data loading (CelebA's JPEG decoding) is not included.

    python benchmarks/paper_settings_step_time.py [--device cpu] [--threads 1] [--small-batch 8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mtlens.models import build_model
from mtlens.models.encoders import ResNet18Encoder, cifar_cnn, conv_encoder
from mtlens.tasks import Task, binary_task, classification_task


@dataclass
class Case:
    name: str
    encoder: Callable[[], nn.Module]
    feature_dim: int
    tasks: list[Task]
    input_shape: tuple[int, ...]
    single_input: bool
    batch_size: int
    steps_per_epoch: int
    timed_batch: int = 0  # 0: time at batch_size


def cases(small_batch: int) -> list[Case]:
    mnist_like = lambda: conv_encoder(1, 28, widths=(32, 64), feature_dim=128)  # noqa: E731
    return [
        Case(
            "mnist_pair (baseline)",
            lambda: conv_encoder(1, 28),
            64,
            [classification_task(t, 10) for t in "ab"],
            (1, 28, 28),
            False,
            64,
            24,
        ),
        Case(
            "fashion_mtl",
            mnist_like,
            128,
            [classification_task(t, 10) for t in "ab"],
            (1, 28, 28),
            False,
            128,
            -(-25_000 // 128),
        ),
        Case(
            "mnists",
            mnist_like,
            128,
            [classification_task(t, 10) for t in ("mnist", "fashion", "notmnist")],
            (1, 28, 28),
            False,
            128,
            -(-50_000 // 128),
        ),
        Case(
            "cifar100",
            cifar_cnn,
            256,
            [classification_task(f"c{i}", 5) for i in range(20)],
            (3, 32, 32),
            False,
            64,
            -(-2_000 // 64),
            small_batch,
        ),
        Case(
            "celeba",
            lambda: ResNet18Encoder(3, 64),
            512,
            [binary_task(f"a{i}") for i in range(40)],
            (3, 64, 64),
            True,
            256,
            -(-162_770 // 256),
            small_batch,
        ),
    ]


def step_fn(case: Case, device: torch.device, batch_size: int) -> Callable[[], None]:
    model = build_model(case.encoder, case.feature_dim, case.tasks, seed=0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    n_batches = 1 if case.single_input else len(case.tasks)
    inputs = [torch.rand(batch_size, *case.input_shape, device=device) for _ in range(n_batches)]
    n_labels = 2 if case.single_input else 5  # binary attributes; a label valid for 5- and 10-way tasks
    targets = {t.name: torch.randint(0, n_labels, (batch_size,), device=device) for t in case.tasks}

    def step() -> None:
        optimizer.zero_grad()
        if case.single_input:
            outputs = model(inputs[0])
            loss = sum(t.loss(outputs[t.name], targets[t.name]).mean() for t in case.tasks)
        else:
            loss = sum(t.loss(model(x, [t.name])[t.name], targets[t.name]).mean() for x, t in zip(inputs, case.tasks))
        loss.backward()
        optimizer.step()

    return step


def seconds_per_step(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small-batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(
        f"{'setting':24s} {'batch':>5s} {'s/step':>8s} {'x baseline':>10s} {'GFLOP/step':>10s} "
        f"{'steps/epoch':>11s} {'epoch (extrapolated)':>20s}"
    )
    baseline = None
    for case in cases(args.small_batch):
        timed_batch = min(case.timed_batch or case.batch_size, case.batch_size)
        scale = case.batch_size / timed_batch
        step = step_fn(case, device, timed_batch)
        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops() * scale
        seconds = seconds_per_step(step, device, args.repeats) * scale
        baseline = baseline or seconds
        epoch = seconds * case.steps_per_epoch
        mark = "*" if scale != 1 else " "
        print(
            f"{case.name:24s} {case.batch_size:5d} {seconds:7.3f}{mark} {seconds / baseline:10.1f} "
            f"{flops / 1e9:10.1f} {case.steps_per_epoch:11d} {epoch / 60:17.1f} min"
        )


if __name__ == "__main__":
    main()

"""Wall time of the demo study's runs with the demo's probes against the same runs without probes.

Usage: ``python benchmarks/probe_overhead.py [--seeds N] [--config configs/demo.yaml] [--baseline-probes P,Q]``.
Trains the STL and MTL runs of ``mnist_pair`` for each seed twice, into two temporary stores:
once with ``probes: []`` (the baseline; ``--baseline-probes``: with these probes instead, to measure what the
config's further probes add) and once with the config's probe settings, alternating the two so that load on a
shared machine hits both alike, and prints the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml

from mtlens import RunStore, parse_config, train_run
from mtlens.settings import load_setting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--baseline-probes", default="", help="comma-separated probes of the baseline (default none)")
    args = parser.parse_args()
    baseline = [p for p in args.baseline_probes.split(",") if p]
    torch.set_num_threads(1)
    raw = {"setting": "mnist_pair", **(yaml.safe_load(Path(args.config).read_text()) or {})}
    setting = load_setting("mnist_pair")
    base_label = f"probes {','.join(baseline)}" if baseline else "without probes"
    times = {base_label: 0.0, "with probes": 0.0}
    with tempfile.TemporaryDirectory() as root:
        for seed in range(args.seeds):
            for tasks in (["a"], ["b"], None):
                for label, extra in ((base_label, {"probes": baseline}), ("with probes", {})):
                    config = parse_config({**raw, **extra, "seed": seed, "tasks": tasks})
                    start = time.perf_counter()
                    train_run(config, RunStore(Path(root) / label.replace(" ", "_")), setting, progress=False)
                    times[label] += time.perf_counter() - start
    for label, seconds in times.items():
        print(f"{label:>15}: {seconds:7.1f} s")
    print(
        f"probe overhead: {times['with probes'] / times[base_label] - 1:+.1%} (probes {raw.get('probes', 'default')} "
        f"against {baseline or 'none'}, sample {raw.get('probe_sample_size', 2048)})"
    )


if __name__ == "__main__":
    main()

"""The report shows what the runs recorded: stores written by a user's own loop (the Recorder) without
some hyperparameters, splits or metrics, with probes the report's process never imported, or with a
damaged trajectory, give a report (exit 0) that says what it left out and why, never a traceback."""

from __future__ import annotations

import json
import math

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtlens import Recorder, RecorderProbes, RunStore
from mtlens.cli import main
from mtlens.probes import PROBES, ProbeContext, register_probe
from mtlens.report.probes import recorded_probe_quantities
from mtlens.tasks import classification_task

pytestmark = pytest.mark.integration  # writes whole reports (a few seconds each)

STEPS = range(0, 41, 10)


def record_runs(store: RunStore, hyperparameters: dict, splits=("train", "val", "test"), probes=None, skip=None):
    """STL a, STL b and MTL a+b over 3 seeds, logging made-up losses and errors that fall with the step
    (MTL a little worse) for ``splits``; ``skip(names, split, task)``: leave that value out."""
    tasks = {t: classification_task(t, 3) for t in ("a", "b")}
    for seed in range(3):
        for names in (["a"], ["b"], ["a", "b"]):
            with Recorder(
                store,
                "toy",
                [tasks[n] for n in names],
                seed,
                steps_per_epoch=10,
                hyperparameters=hyperparameters,
                probes=probes(names) if probes else None,
            ) as rec:
                for step in STEPS:
                    if probes:
                        rec.step(step)
                    level = math.exp(-step / 20) * (1 + 0.05 * seed + 0.1 * (len(names) - 1)) + 0.01 * step
                    for split in splits:
                        values = {
                            n: {"loss": level * (1.2 if split != "train" else 1.0), "error": level / 3}
                            for n in names
                            if not (skip and skip(names, split, n))
                        }
                        if values:
                            rec.log(step, split, values)


def report(store: RunStore, out, capsys) -> tuple[int, str, str]:
    code = main(["report", "--store", str(store.root), "--out", str(out)])
    _, err = capsys.readouterr()
    html = (out / "report.html").read_text() if (out / "report.html").exists() else ""
    return code, html, err


def test_missing_hyperparameters_are_not_recorded_never_a_crash(tmp_path, capsys):
    store = RunStore(tmp_path / "store")
    record_runs(store, {"lr": 0.01, "optimizer": "adam"})
    record_runs(store, {"lr": 0.01, "optimizer": "sgd"})  # no momentum: the user did not record it
    assert "momentum" not in store.runs()
    code, html, err = report(store, tmp_path / "report", capsys)
    assert code == 0, err
    optimizers = pd.read_csv(tmp_path / "report" / "tables" / "optimizers.csv")
    assert {"adam", "sgd (momentum not recorded)"} <= set(optimizers.columns)
    assert len(optimizers) == 4  # tasks a, b x STL, MTL
    assert "Traceback" not in err


def test_a_section_without_its_inputs_says_what_it_needs_and_the_report_goes_on(tmp_path, capsys):
    store = RunStore(tmp_path / "store")
    record_runs(store, {"lr": 0.01}, splits=("train", "val"))  # no test split
    code, html, err = report(store, tmp_path / "report", capsys)
    assert code == 0, err
    assert "these runs do not record their optimizer" in html  # no 'optimizer' among the hyperparameters
    needs = "this section needs test/error rows of each task, which no analysed run recorded"
    transfer = html[html.index('<section id="transfer">') :]
    assert needs in transfer[: transfer.index("</section>")]
    # The sections whose inputs were recorded are there: the gap figures of both tasks.
    assert (tmp_path / "report" / "figures" / "gap_toy_sum_a.vl.json").exists()
    assert "When did the gap open?" in html and "No task has both STL and MTL" not in html


def test_inputs_missing_for_some_tasks_are_named_above_the_results(tmp_path, capsys):
    store = RunStore(tmp_path / "store")
    record_runs(store, {"lr": 0.01}, skip=lambda names, split, task: split == "test" and task == "b")
    code, html, err = report(store, tmp_path / "report", capsys)
    assert code == 0, err
    assert "Not recorded, so left out of this section: test/error of toy: b." in html
    transfer = pd.read_csv(tmp_path / "report" / "tables" / "transfer.csv")
    assert list(transfer["task"]) == ["a"]


def drop_quantity(path):
    pq.write_table(pq.read_table(path).drop(["quantity"]), path)


def flip_a_byte(path):
    """A file of the right size, footer and schema (what the index checks), one byte of its data changed."""
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, problem",
    [(drop_quantity, "columns ['quantity'] are missing"), (flip_a_byte, "digest differs")],
    ids=["missing-column", "flipped-byte"],
)
def test_a_damaged_trajectory_is_left_out_naming_the_run_and_file(tmp_path, capsys, damage, problem):
    store = RunStore(tmp_path / "store")
    record_runs(store, {"lr": 0.01})
    runs = store.runs()
    damaged = runs[(runs["mode"] == "mtl") & (runs["seed"] == 2)]["run_id"].iloc[0]
    damage(store.run_dir(damaged) / "trajectory.parquet")
    code, html, err = report(store, tmp_path / "report", capsys)
    assert code == 0, err
    line = next(line for line in err.splitlines() if line.startswith(f"report: left out run {damaged}: "))
    assert "trajectory.parquet" in line and problem in line
    left_out = pd.read_csv(tmp_path / "report" / "tables" / "left_out_runs.csv")
    assert list(left_out["run_id"]) == [damaged] and list(left_out["state"]) == ["damaged"]
    assert "trajectory.parquet" in left_out["message"].iloc[0] and damaged in html
    transfer = pd.read_csv(tmp_path / "report" / "tables" / "transfer.csv")
    assert set(transfer["n_mtl"]) == {2}  # the other two MTL seeds are analysed


class Towers(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(4, 5)
        self.heads = nn.ModuleDict({t: nn.Linear(5, 3) for t in ("a", "b")})

    def forward(self, x):
        z = torch.tanh(self.trunk(x))
        return {t: head(z) for t, head in self.heads.items()}


@pytest.fixture
def user_probes(request):
    """Two user probes, registered while recording only: a per-task one and a per-run one."""

    @register_probe("user_norm", quantities=("probe/user_norm",))
    def user_norm(context: ProbeContext, task) -> dict[str, float]:
        return {"user_norm": float(sum(p.detach().norm() for p in context.model.shared_parameters())) + context.step}

    @register_probe("user_run", quantities=("probe/user_run",), per_task=False)
    def user_run(context: ProbeContext) -> list[dict]:
        return [{"task": "*", "quantity": "probe/user_run", "value": float(context.step)}]

    request.addfinalizer(lambda: [PROBES.unregister(n) for n in ("user_norm", "user_run") if n in PROBES])


def test_probe_quantities_of_unregistered_probes_are_drawn(tmp_path, capsys, user_probes):
    torch.manual_seed(0)
    model = Towers()
    sample = {"x": torch.randn(12, 4), "a": torch.randint(0, 3, (12,)), "b": torch.randint(0, 3, (12,))}

    def probes(names):
        def losses(batch):
            outputs = model(batch["x"])
            return {t: F.cross_entropy(outputs[t], batch[t], reduction="none") for t in names}

        return RecorderProbes(model, model.trunk.parameters(), losses, sample, STEPS, probes=("user_norm", "user_run"))

    store = RunStore(tmp_path / "store")
    record_runs(store, {"lr": 0.01}, probes=probes)
    PROBES.unregister("user_norm")
    PROBES.unregister("user_run")  # the report's process has not imported the user's probes
    rows = store.trajectories()
    assert recorded_probe_quantities(rows[rows["quantity"].str.startswith("probe/")]) == (
        ["probe/user_norm"],
        ["probe/user_run"],
    )
    code, html, err = report(store, tmp_path / "report", capsys)
    assert code == 0, err
    figures = tmp_path / "report" / "figures"
    per_task = json.dumps(json.loads((figures / "probes_toy_sum.vl.json").read_text()))
    other = json.dumps(json.loads((figures / "probes_other_toy_sum.vl.json").read_text()))
    assert "probe/user_norm" in per_task and "probe/user_run" not in per_task
    assert "probe/user_run" in other

"""A real multi-node Ray cluster on this machine: a sweep spread over two nodes, one node
removed in the middle; the rerun finishes with the rows and selection of a local sweep."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from mtlens import RunStore
from mtlens.orchestration import run_sweep

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from mtlens.orchestration.ray_backend import RayExecutor  # noqa: E402

BASE = {
    "setting": "digits_pair",
    "epochs": 3,
    "batch_size": 32,
    "train_eval_size": 64,
    "setting_options": {"n_train": 128, "n_val": 32, "n_test": 32},
}
GRID = {"lr": [3e-2, 1e-3]}
SEEDS = [0, 1]


def _rows(store: RunStore) -> pd.DataFrame:
    return store.trajectories().sort_values(["run_id", "step", "task", "quantity"]).reset_index(drop=True)


def _running(store: RunStore) -> list[str]:
    return [r for r in store.run_ids() if (store.status(r) or {}).get("state") == "running"]


@pytest.mark.slow
def test_sweep_survives_losing_a_node_of_a_two_node_cluster(tmp_path):
    reference = RunStore(tmp_path / "reference")
    expected = run_sweep(BASE, GRID, reference, ["sum"], SEEDS, progress=False)

    # Two nodes of one CPU each: two runs in flight at once are necessarily on different nodes.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker_node = cluster.add_node(num_cpus=1)
    store = RunStore(tmp_path / "store")
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        outcome: dict[str, object] = {}

        def sweep() -> None:
            try:
                outcome["result"] = run_sweep(
                    BASE, GRID, store, ["sum"], SEEDS, executor=RayExecutor(address=cluster.address), progress=False
                )
            except Exception as err:  # the first attempt may end with runs lost to the removed node
                outcome["error"] = err

        thread = threading.Thread(target=sweep)
        thread.start()
        deadline, both = time.time() + 240, False
        while time.time() < deadline and thread.is_alive() and not both:
            both = len(_running(store)) >= 2  # one run on each node
            time.sleep(0.02)
        assert both, "the sweep never ran on both nodes at once"
        cluster.remove_node(worker_node)  # the node goes away with its run in the middle
        thread.join(timeout=600)
        assert not thread.is_alive()
        assert len([n for n in ray.nodes() if n["Alive"]]) == 1

        # Rerun on what is left of the cluster: only missing work is done.
        result = run_sweep(
            BASE, GRID, store, ["sum"], SEEDS, executor=RayExecutor(address=cluster.address), progress=False
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert (store.runs()["state"] == "finished").all()
    assert sorted(store.run_ids()) == sorted(reference.run_ids())
    rows = _rows(store)
    assert not rows.duplicated(["run_id", "step", "task", "quantity"]).any()
    pd.testing.assert_frame_equal(rows, _rows(reference))
    pd.testing.assert_frame_equal(result.selected, expected.selected)

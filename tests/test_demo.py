"""`make demo`'s study (configs/demo.yaml on mnist1d_split, 8 seeds, sum) shows what mtlens finds: at least
one significant verdict and one honest null in its report's answers.  Slow (about 110 CPU-s of training:
benchmarks/README.md, "demo"), so left out of `make test`; run with `pytest -m slow tests/test_demo.py`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mtlens.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.integration
def test_demo_report_has_a_finding_and_a_null(tmp_path):
    store, report = tmp_path / "store", tmp_path / "report"
    args = ["study", "mnist1d_split", "--seeds", "8", "--config", str(ROOT / "configs" / "demo.yaml")]
    assert main([*args, "--store", str(store), "--report", str(report), "--quiet"]) == 0
    transfer = pd.read_csv(report / "tables" / "transfer.csv")
    assert (transfer["verdict"] != "no evidence").any()
    page = (report / "report.html").read_text()
    assert "made task" in page and "could be shown" in page

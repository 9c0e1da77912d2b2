"""Smoke test of scripts/benchmark.py on tiny synthetic data; it checks that every case runs, not speed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from conftest import REPOSITORY


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("benchmark", REPOSITORY / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_benchmark_runs_every_case(tmp_path: Path):
    benchmark = _load_benchmark()

    results = benchmark.main(["--quick", "--in-process", "--threads", "1", "--out", str(tmp_path)])
    results += benchmark.main(
        ["--quick", "--in-process", "--only", "synthetic", "--engine", "plain", "--threads", "1", "--out", str(tmp_path)]
    )

    kinds = {result["kind"] for result in results}
    assert {"lightning", "plain", "naive", "full-batch-step", "to-auroc", "synthetic"} <= kinds
    assert [result.get("error") for result in results if "error" in result] == []
    timed = [result for result in results if result["kind"] != "profile"]
    assert all(result["seconds_per_epoch"] > 0 and result["peak_rss_bytes"] > 0 for result in timed)
    assert {result["engine"] for result in results if result["kind"] == "synthetic"} == {"lightning", "plain"}
    report = json.loads((tmp_path / "results.json").read_text())
    assert len(report["results"]) == 3  # the second run: full-grid BCE, sampled BCE and BPR
    assert "| data | case | device | s/epoch |" in (tmp_path / "results.md").read_text()


def test_case_runs_in_a_subprocess(tmp_path: Path):
    benchmark = _load_benchmark()
    case = {"kind": "full-batch-step", "data": "grid", "shape": [20, 15, 60], "device": "cpu", "epochs": 1,
            "k": 2, "lr": 0.01, "batch_size": None, "seed": 0, "threads": 1}  # fmt: skip

    result = benchmark.run_case(case, tmp_path, timeout=300)

    assert "error" not in result, result.get("error")
    assert result["examples_per_epoch"] == 20 * 15

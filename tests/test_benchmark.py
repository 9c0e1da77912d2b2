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

    config = tmp_path / "full-batch.yaml"
    config.write_text("k: 4\noptimizer: adam\nbias: true\nbatch_size: 1000000\nmax_epochs: 300\n")
    results = benchmark.main(
        ["--quick", "--in-process", "--threads", "1", "--repeats", "2", "--config", str(config), "--out", str(tmp_path)]
    )
    results += benchmark.main(
        ["--quick", "--in-process", "--only", "synthetic", "--engine", "plain", "--threads", "1", "--out", str(tmp_path)]
    )

    kinds = {result["kind"] for result in results}
    assert {"lightning", "plain", "naive", "full-batch-step", "to-auroc", "config", "synthetic"} <= kinds
    assert [result.get("error") for result in results if "error" in result] == []
    timed = [result for result in results if result["kind"] != "profile"]
    assert all(result["seconds_per_epoch"] > 0 and result["peak_rss_bytes"] > 0 for result in timed)
    assert {result["engine"] for result in results if result["kind"] == "synthetic"} == {"lightning", "plain"}
    report = json.loads((tmp_path / "results.json").read_text())
    assert len(report["results"]) == 3  # the second run: full-grid BCE, sampled BCE and BPR
    assert "| data | case | device | s/epoch |" in (tmp_path / "results.md").read_text()
    config_runs = [result for result in results if result["kind"] == "config"]
    assert [result["repeat"] for result in config_runs] == [0, 0, 1, 1]
    assert {result["batch_size"] for result in config_runs} == {None}  # one batch contains the whole grid


def test_quick_benchmark_reports_target_ratios(tmp_path: Path):
    benchmark = _load_benchmark()

    benchmark.main(["--quick", "--in-process", "--threads", "1", "--only", "lightning,plain", "--out", str(tmp_path)])

    report = json.loads((tmp_path / "results.json").read_text())
    [target] = report["targets"]
    assert target["comparison"].startswith("hybridmf under Lightning, batch 2000 / plain loop")
    assert len(target["ratios"]) == 3  # the default --repeats
    assert target["met"] == (target["ratio"] <= 1.5)
    assert "| comparison | device |" in (tmp_path / "results.md").read_text()


def _timed(kind: str, repeat: int, seconds: float) -> dict:
    return {"kind": kind, "data": "mef", "device": "cpu", "repeat": repeat, "seconds_per_epoch": seconds}


def test_target_ratios_take_median_per_turn():
    benchmark = _load_benchmark()
    results = [
        _timed("lightning", 0, 3.0), _timed("plain", 0, 2.0), _timed("config", 0, 0.14),
        _timed("lightning", 1, 2.0), _timed("plain", 1, 1.0), _timed("config", 1, 0.07),
        _timed("lightning", 2, 1.2), _timed("plain", 2, 1.0), _timed("config", 2, 0.21),
        {"kind": "lightning", "data": "mef", "device": "cpu", "seconds_per_epoch": 9.0},  # not repeated
    ]  # fmt: skip

    overhead, config_over_plain, config_over_keras = benchmark.target_ratios(results)

    assert overhead["comparison"].startswith("hybridmf under Lightning, batch 2000 / plain loop")
    assert overhead["ratios"] == [1.5, 2.0, 1.2]
    assert overhead["ratio"] == 1.5
    assert overhead["met"] is True
    assert config_over_plain["comparison"].startswith("default config / plain loop")
    assert config_over_plain["ratios"] == [0.07, 0.07, 0.21]
    assert config_over_plain["met"] is True
    assert config_over_keras["comparison"].startswith("default config / Keras prototype, 0.70 s")
    assert config_over_keras["ratios"] == [0.2, 0.1, 0.3]
    assert config_over_keras["met"] is False


def test_case_runs_in_a_subprocess(tmp_path: Path):
    benchmark = _load_benchmark()
    case = {"kind": "full-batch-step", "data": "grid", "shape": [20, 15, 60], "device": "cpu", "epochs": 1,
            "k": 2, "lr": 0.01, "batch_size": None, "seed": 0, "threads": 1}  # fmt: skip

    result = benchmark.run_case(case, tmp_path, timeout=300)

    assert "error" not in result, result.get("error")
    assert result["examples_per_epoch"] == 20 * 15

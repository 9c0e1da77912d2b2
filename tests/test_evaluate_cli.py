"""Smoke tests of scripts/evaluate.py and scripts/make_results.py: files, rows and figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from hybridmf.evaluation.report import compare_with_best_baseline

REPOSITORY = Path(__file__).resolve().parents[1]
TINY_RUN = ["--config", "none", "--folds", "2", "--max-epochs", "2", "--batch-size", "64", "--no-progress"]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPOSITORY / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("protocol", "methods"),
    [
        ("warm", ["model", "popularity", "row_knn", "column_knn", "ease"]),
        ("cold-drug", ["model", "popularity", "feature_knn"]),
    ],
)
def test_evaluate_writes_report_files(protocol, methods, tiny_mef_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "cv"
    argv = ["--protocol", protocol, "--data-dir", str(tiny_mef_dir), *TINY_RUN, "--out", str(out)]
    _load_script("evaluate").main(argv)

    for name in ("report.md", "results.csv", "precision_at_k.csv", "run.json",
                 "training_curves.png", "roc_pr.png", "precision_at_k.png"):
        assert (out / name).is_file(), name
    for fold in (0, 1):
        assert (out / f"fold-{fold}" / "logs" / "metrics.csv").is_file()
    results = pd.read_csv(out / "results.csv")
    assert sorted(zip(results["method"], results["fold"])) == sorted((m, f) for m in methods for f in (0, 1))
    assert results[["auroc", "aupr", "ndcg@10", "wall_seconds"]].notna().all().all()
    precision = pd.read_csv(out / "precision_at_k.csv")
    assert len(precision) == len(methods) * 2 * 7
    report = (out / "report.md").read_text()
    assert "python scripts/evaluate.py --protocol " + protocol in report
    assert "| model |" in report and "Seed: 0" in report
    assert "- auroc:" in report
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["folds"] == 2 and run["environment"]["packages"]["torch"]
    assert "| method | auroc |" in capsys.readouterr().out


def test_evaluate_rejects_unknown_protocol(capsys):
    with pytest.raises(SystemExit):
        _load_script("evaluate").main(["--protocol", "cold"])
    assert "invalid choice: 'cold'" in capsys.readouterr().err


def test_compare_says_when_model_loses():
    results = pd.DataFrame({
        "method": ["model", "model", "a", "a", "b", "b"],
        "fold": [0, 1, 0, 1, 0, 1],
        "ndcg@10": [0.20, 0.22, 0.30, 0.20, 0.25, 0.25],
    })

    assert compare_with_best_baseline(results, ["ndcg@10"]) == [
        "- ndcg@10: no, the model (0.210 ± 0.014) trails the best baseline, a (0.250 ± 0.071), "
        "by 0.040, and is higher in 1 of 2 folds."
    ]


def test_make_results_renders_section(tiny_mef_dir: Path, tmp_path: Path, monkeypatch):
    module = _load_script("make_results")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(module, "RUNS", (("tiny", "tiny warm run", ["--protocol", "warm", "--methods", "popularity"]),))
    monkeypatch.setattr(module, "VARIANTS", ())
    monkeypatch.setattr(module, "COMMON_ARGUMENTS", ["--folds", "2", "--no-progress"])
    monkeypatch.setattr(module, "run_configuration", lambda name, arguments, extra: _load_script("evaluate").main(
        [*arguments, *module.COMMON_ARGUMENTS, *extra, "--out", str(module.RUNS_DIR / name)]))
    results_page = tmp_path / "docs" / "results.md"
    results_page.parent.mkdir()
    results_page.write_text("# Results\n\nKept text.\n\n" + module.BEGIN + "\nold\n" + module.END + "\n\n## Later\n")

    module.main(["--data-dir", str(tiny_mef_dir)])

    text = results_page.read_text()
    assert "Kept text." in text and "## Later" in text and "\nold\n" not in text
    assert "### tiny warm run" in text and "| popularity |" in text
    assert (tmp_path / "docs" / "figures" / "tiny-precision_at_k.png").is_file()


@pytest.mark.integration
def test_evaluate_two_folds_on_mef(mef_dir: Path, tmp_path: Path):
    out = tmp_path / "mef"
    argv = ["--protocol", "warm", "--folds", "2", "--data-dir", str(mef_dir), "--max-epochs", "1",
            "--batch-size", "100000", "--val-fraction", "0", "--methods", "model", "popularity", "ease",
            "--no-progress", "--out", str(out)]
    result = _load_script("evaluate").main(argv)

    assert len(result.results) == 6
    popularity = result.results[result.results["method"] == "popularity"]
    assert popularity["auroc"].between(0.80, 0.84).all()
    assert (out / "report.md").is_file()

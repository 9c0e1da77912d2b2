"""Hyperparameter search: inner splits that never touch the test fold, the objective, the script."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hybridmf.tuning

from hybridmf.config import FitConfig, load_yaml
from hybridmf.evaluation.protocols import protocol_folds
from hybridmf.model.module import HybridMF
from hybridmf.training import load_data
from hybridmf.tuning import objective_value, tuning_data

optuna = pytest.importorskip("optuna")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import tune  # noqa: E402


def _rows(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(pair) for pair in pairs.tolist()}


@pytest.mark.parametrize("protocol", ["warm", "cold-drug"])
def test_tuning_split_stays_inside_the_fold_training_part(tiny_mef_dir: Path, protocol: str):
    config = FitConfig(data_dir=str(tiny_mef_dir))
    data = load_data(config)
    tuning = tuning_data(config, protocol, data, n_folds=3, fold=1, val_fraction=0.3)
    _, folds = protocol_folds(data, protocol, 3, config.seed)
    outer = folds[1]
    inner_pairs = _rows(tuning.split.train_pairs) | _rows(tuning.split.val_pairs)
    assert inner_pairs == _rows(outer.train_pairs)
    assert not inner_pairs & _rows(outer.val_pairs)
    if protocol == "cold-drug":
        # The fold's test drugs are neither trained on nor scored.
        assert set(outer.val_rows) <= set(tuning.split.cold_rows)
        assert not set(outer.val_rows) & set(tuning.split.val_rows)


def test_objective_values():
    metrics = {"auroc": 0.9, "aupr": 0.3, "ndcg@5": 0.4}
    reference = {"auroc": 0.9, "aupr": 0.1, "ndcg@5": 0.2}
    assert objective_value(metrics, reference, "balanced", 5) == pytest.approx((1 + 3 + 2) / 3)
    assert objective_value(metrics, reference, "ndcg", 5) == 0.4
    assert objective_value(metrics, reference, "aupr", 5) == 0.3
    with pytest.raises(ValueError, match="objective must be one of balanced, baselines, auroc, aupr, ndcg, got 'f1'"):
        objective_value(metrics, reference, "f1", 5)


def test_tune_script_writes_and_continues(tiny_mef_dir: Path, tmp_path: Path, monkeypatch):
    full_space = hybridmf.tuning.suggest

    def short_trials(trial, config, hold=()):
        return {**full_space(trial, config, hold), "max_epochs": 3}

    monkeypatch.setattr(tune, "suggest", short_trials)
    output = tmp_path / "configs" / "tuned.yaml"
    argv = [
        "--data-dir", str(tiny_mef_dir), "--protocol", "warm", "--folds", "3", "--trials", "2",
        "--batch-size", "100000", "--features", "fingerprints", "--fingerprint-bits", "64",
        "--output", str(output), "--storage", str(tmp_path / "study.db"),
    ]
    study = tune.main(argv)
    assert len(study.trials) == 2
    values = load_yaml(output)
    config = FitConfig(**values)
    # Base options that differ from the defaults are kept; searched ones are added.
    assert (config.features, config.fingerprint_bits, config.batch_size) == ("fingerprints", 64, 100000)
    assert {"lr", "l2", "k", "max_epochs", "bias", "pos_weight", "row_feature_l2"} <= set(values)
    # The file contains the drawn epoch count (a multiple of 10 from 20), not the 3 epochs trained here.
    assert values["max_epochs"] % 10 == 0
    assert values["max_epochs"] >= 20
    assert "col_feature_l2" not in values
    assert "data_dir" not in values
    assert "outer fold 0 of 3" in output.read_text()
    # The same command continues the stored study.
    assert len(tune.main(argv).trials) == 4
    # --trials 0 rewrites the output from the stored trials only.
    output.unlink()
    assert len(tune.main([*argv, "--trials", "0"]).trials) == 4
    assert output.is_file()
    # A stored study does not continue under other fixed options.
    with pytest.raises(ValueError, match=r"run with other fixed options \(fingerprint_bits\)"):
        tune.main([*argv, "--fingerprint-bits", "32", "--trials", "1"])
    # Averaging over the inner splits of two outer folds.
    averaged = [*argv[:-2], "--storage", str(tmp_path / "two.db"), "--inner-folds", "2", "--trials", "1"]
    assert len(tune.main(averaged).trials) == 1
    assert "outer folds 0, 1 of 3, averaged" in output.read_text()
    # --hold keeps an option at its given value instead of searching it.
    held_bias = [*argv[:-2], "--storage", str(tmp_path / "held.db"), "--trials", "1", "--bias", "--hold", "bias"]
    assert "bias" not in tune.main(held_bias).trials[0].params
    assert load_yaml(output)["bias"] is True
    with pytest.raises(ValueError, match=r"--hold takes options that the search draws \(lr, .*\), got optimizer"):
        tune.main([*held_bias, "--hold", "optimizer"])
    # The baselines objective: the smallest ratio to the best default baseline of each metric.
    against_baselines = [*argv[:-2], "--storage", str(tmp_path / "baselines.db"), "--trials", "1", "--objective", "baselines"]
    study = tune.main(against_baselines)
    best = study.user_attrs["best_baselines"]
    ratios = [study.trials[0].user_attrs[name] / best[name] for name in ("auroc", "aupr", "ndcg@10")]
    assert study.trials[0].value == pytest.approx(min(ratios), rel=1e-6)
    assert "Best baseline per metric on the same split: auroc" in output.read_text()


def test_encoder_penalty_adds_squared_weights():
    torch.manual_seed(0)
    plain = HybridMF(n_rows=4, n_cols=3, k=2, row_feature_dim=5, loss="bce")
    penalized = HybridMF(n_rows=4, n_cols=3, k=2, row_feature_dim=5, loss="bce", row_feature_l2=0.5)
    penalized.load_state_dict(plain.state_dict())
    features = torch.rand(4, 5)
    plain.set_features(row_features=features)
    penalized.set_features(row_features=features)
    batch = {"rows": torch.arange(4), "labels": (torch.rand(4, 3) > 0.5).float()}
    weights = penalized.row_tower.encoder.layers[0].weight
    expected = plain._shared_step(batch, "train") + 0.5 * weights.pow(2).sum()
    assert torch.allclose(penalized._shared_step(batch, "train"), expected)
    # The column side has no encoder, so its penalty has nothing to act on.
    only_columns = HybridMF(n_rows=4, n_cols=3, k=2, row_feature_dim=5, loss="bce", col_feature_l2=9.0)
    only_columns.load_state_dict(plain.state_dict())
    only_columns.set_features(row_features=features)
    assert torch.allclose(only_columns._shared_step(batch, "train"), plain._shared_step(batch, "train"))


def test_select_trial_breaks_near_ties_by_auroc():
    study = optuna.create_study(direction="maximize")
    for value, auroc in ((2.00, 0.90), (2.33, 0.88), (2.31, 0.895), (2.20, 0.95)):
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"auroc": auroc}))
    assert hybridmf.tuning.select_trial(study, tolerance=0.01).value == 2.31
    assert hybridmf.tuning.select_trial(study, tolerance=0.0).value == 2.33
    assert hybridmf.tuning.select_trial(study, tolerance=0.1).value == 2.20


def test_select_trial_equal_auroc_prefers_objective():
    study = optuna.create_study(direction="maximize")
    for value, auroc in ((2.418, 0.9028), (2.400, 0.9029), (2.417, 0.8957)):
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"auroc": auroc}))

    assert hybridmf.tuning.select_trial(study, tolerance=0.01).value == 2.418
    assert hybridmf.tuning.select_trial(study, tolerance=0.01, auroc_margin=0.0).value == 2.400


def test_select_trial_empty_study():
    study = optuna.create_study(direction="maximize", study_name="warm-empty")
    with pytest.raises(ValueError, match="'warm-empty' has no finished trials.*--trials 1"):
        hybridmf.tuning.select_trial(study, tolerance=0.0)

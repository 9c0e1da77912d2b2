"""Feature ridge regression (the ``feature_ridge`` baseline) and the ridge blend of HybridMF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import rankdata

from hybridmf.config import FitConfig, parse_config
from hybridmf.data.synthetic import powerlaw_pairs
from hybridmf.evaluation.baselines import FeatureRidge, make_baseline
from hybridmf.model.module import HybridMF

N_ROWS, N_COLS, N_FEATURES = 30, 12, 8
# Rows 25-29 have no training pairs: they are the new rows that the ridge part scores.
NEW_ROWS = np.arange(25, 30)


def _pairs() -> np.ndarray:
    pairs = powerlaw_pairs(N_ROWS, N_COLS, 150, np.random.default_rng(0))
    return np.unique(pairs[~np.isin(pairs[:, 0], NEW_ROWS)], axis=0)


def _features(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((N_ROWS, N_FEATURES))


def _reference_ridge(
    features: np.ndarray, pairs: np.ndarray, l2: float, rows: np.ndarray, scale_pairs: np.ndarray | None = None
) -> np.ndarray:
    """Ridge scores of ``rows`` from a fit on the rows of ``pairs``, by the normal equations.

    The features are first divided by the root mean squared norm of the centered rows
    of ``scale_pairs`` (default ``pairs``), as ``FeatureRidge`` does with one block.
    """
    scale_rows = np.unique((pairs if scale_pairs is None else scale_pairs)[:, 0])
    centered = features[scale_rows] - features[scale_rows].mean(axis=0)
    features = features / np.sqrt((centered**2).sum(axis=1).mean())
    targets = np.zeros((N_ROWS, N_COLS))
    targets[pairs[:, 0], pairs[:, 1]] = 1.0
    train = np.unique(pairs[:, 0])
    mean_x, mean_y = features[train].mean(axis=0), targets[train].mean(axis=0)
    design = features[train] - mean_x
    weights = np.linalg.solve(design.T @ design + l2 * np.eye(features.shape[1]), design.T @ (targets[train] - mean_y))
    return (features[rows] - mean_x) @ weights + mean_y


@pytest.mark.parametrize("n_features", [4, 40])  # the primal solve (F < T) and the dual one (F > T)
def test_ridge_matches_the_normal_equations(n_features: int):
    features = np.random.default_rng(2).random((N_ROWS, n_features))
    ridge = FeatureRidge(l2=0.7).fit(_pairs(), N_ROWS, N_COLS, row_features=features)
    expected = _reference_ridge(features, _pairs(), 0.7, NEW_ROWS)

    assert np.allclose(ridge.score_rows(NEW_ROWS).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("n_features", [4, 40])
def test_leave_one_out_equals_refit(n_features: int):
    features = np.random.default_rng(3).random((N_ROWS, n_features))
    pairs = _pairs()
    ridge = FeatureRidge(l2=0.5).fit(pairs, N_ROWS, N_COLS, row_features=features)
    for position in (0, 7, len(ridge.train_rows_) - 1):
        row = int(ridge.train_rows_[position])
        expected = _reference_ridge(features, pairs[pairs[:, 0] != row], 0.5, np.array([row]), pairs)[0]

        assert np.allclose(ridge.loo_scores_[position].numpy(), expected, atol=1e-5)


def test_each_block_is_scaled_to_unit_norm():
    features = _features()
    scaled = features.copy()
    scaled[:, 4:] *= 100.0  # a source on another scale
    blocks = [(0, 4), (4, 4)]
    ridge = FeatureRidge(l2=1.0, blocks=blocks).fit(_pairs(), N_ROWS, N_COLS, row_features=features)
    rescaled = FeatureRidge(l2=1.0, blocks=blocks).fit(_pairs(), N_ROWS, N_COLS, row_features=scaled)
    one_block = FeatureRidge(l2=1.0).fit(_pairs(), N_ROWS, N_COLS, row_features=scaled)

    assert torch.allclose(ridge.score_rows(NEW_ROWS), rescaled.score_rows(NEW_ROWS), atol=1e-5)
    assert not torch.allclose(ridge.score_rows(NEW_ROWS), one_block.score_rows(NEW_ROWS), atol=1e-3)


def test_ridge_is_registered_and_checks_its_input():
    assert isinstance(make_baseline("feature_ridge", l2=2.0), FeatureRidge)
    with pytest.raises(ValueError, match="l2 must be a finite number > 0"):
        FeatureRidge(l2=0.0)
    with pytest.raises(ValueError, match="row_features is missing"):
        FeatureRidge().fit(_pairs(), N_ROWS, N_COLS)
    with pytest.raises(ValueError, match=r"block \(offset=6, width=4\) lies outside the 8 feature columns"):
        FeatureRidge(blocks=[(6, 4)]).fit(_pairs(), N_ROWS, N_COLS, row_features=_features())


# ----------------------------------------------------------------------------------------
# The ridge blend of HybridMF


def _ridge_model(weight: float, l2: float = 1.0) -> HybridMF:
    torch.manual_seed(0)
    featurizer = {"row": [{"source": "a", "width": 4, "offset": 0}, {"source": "b", "width": 4, "offset": 4}],
                  "col": [], "fingerprint_radius": 2, "fingerprint_bits": 2048, "scalers": {"row": {}, "col": {}}}
    model = HybridMF(
        n_rows=N_ROWS, n_cols=N_COLS, k=3, row_ids=False, row_feature_dim=N_FEATURES, bias=True, blend="ridge",
        blend_weight=weight, blend_ridge_l2=l2, featurizer=featurizer,
    ).eval()
    model.set_features(row_features=torch.from_numpy(_features()).float())
    model.fit_blend(_pairs())
    return model


def _global_ranks(scores: torch.Tensor) -> np.ndarray:
    return rankdata(scores.detach().numpy().ravel())


def test_ridge_weight_one_ranks_as_ridge():
    model = _ridge_model(weight=1.0)
    ridge = FeatureRidge(l2=1.0, blocks=[(0, 4), (4, 4)]).fit(_pairs(), N_ROWS, N_COLS, row_features=_features())
    with torch.no_grad():
        blended = model.score_rows(torch.as_tensor(NEW_ROWS))

    # Ties come only from the quantile grid's clamping at its ends, so compare the orders per row.
    for row in range(len(NEW_ROWS)):
        expected = ridge.score_rows(NEW_ROWS[[row]])[0]
        assert np.array_equal(np.argsort(-blended[row].numpy(), kind="stable")[:5], np.argsort(-expected.numpy(), kind="stable")[:5])


def test_ridge_weight_zero_ranks_as_network():
    model = _ridge_model(weight=0.0)
    rows = torch.arange(N_ROWS)
    with torch.no_grad():
        assert np.array_equal(_global_ranks(model.score_rows(rows)), _global_ranks(model.network_logits(rows)))


def test_ridge_blend_scoring_paths_agree():
    model = _ridge_model(weight=0.5)
    rows = torch.as_tensor(NEW_ROWS)
    with torch.no_grad():
        matrix = model.score_rows(rows)
        from_features = model.score_new_rows(model.row_tower.features[rows])
        pairs = model.score_pairs(rows.repeat_interleave(N_COLS), torch.arange(N_COLS).repeat(len(rows)))

    assert not torch.equal(matrix, model.network_logits(rows))
    assert torch.allclose(from_features, matrix, atol=1e-5)
    assert torch.allclose(pairs.view(len(rows), N_COLS), matrix, atol=1e-5)


def test_ridge_blend_reloads_from_a_checkpoint(tmp_path: Path):
    model = _ridge_model(weight=0.4)
    path = tmp_path / "ridge.ckpt"
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "pytorch-lightning_version": "2.6.0"}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    reloaded = HybridMF.load_from_checkpoint(path, map_location="cpu").eval()
    rows = torch.arange(N_ROWS)

    assert reloaded.blend_fitted
    with torch.no_grad():
        assert torch.equal(reloaded.score_rows(rows), model.score_rows(rows))


def test_ridge_blend_needs_row_features():
    with pytest.raises(ValueError, match="blend='ridge' regresses the rows' training vectors on their features"):
        HybridMF(n_rows=N_ROWS, n_cols=N_COLS, k=3, blend="ridge")


def test_ridge_blend_options_parse_and_are_checked():
    config = parse_config(["--blend", "ridge", "--blend-ridge-l2", "5", "--blend-weight", "0.4"])

    assert (config.blend, config.blend_ridge_l2, config.blend_weight) == ("ridge", 5.0, 0.4)
    with pytest.raises(ValueError, match="invalid blend_ridge_l2: l2 must be a finite number > 0"):
        FitConfig(blend="ridge", blend_ridge_l2=-1.0)


# ----------------------------------------------------------------------------------------
# The feature_ridge method of scripts/evaluate.py


def test_cold_defaults_include_feature_ridge():
    from hybridmf.evaluation.protocols import default_methods

    assert default_methods("cold-drug", has_row_features=True, has_model_features=True) == (
        "model", "popularity", "feature_knn", "feature_ridge",
    )
    assert "feature_ridge" not in default_methods("warm", has_row_features=True, has_model_features=True)


def test_feature_ridge_without_row_features_is_refused(tmp_path: Path):
    from hybridmf.config import EvaluateConfig
    from hybridmf.data.interactions import InteractionData
    from hybridmf.evaluation.protocols import run_protocol

    rows, cols = [f"r{i}" for i in range(N_ROWS)], [f"c{j}" for j in range(N_COLS)]
    data = InteractionData(
        rows=pd.DataFrame({"id": rows, "name": rows}), cols=pd.DataFrame({"id": cols, "name": cols}), pairs=_pairs()
    )
    config = EvaluateConfig(progress=False, accelerator="cpu")
    with pytest.raises(ValueError, match="method 'feature_ridge' regresses on the row features of the model, but it has none"):
        run_protocol(config, "cold-drug", n_folds=2, methods=["feature_ridge"], data=data, out_dir=tmp_path)


def test_feature_ridge_atc_on_mef(mef_dir: Path, tmp_path: Path):
    from hybridmf.evaluation.protocols import run_protocol

    config = parse_config(["--data-dir", str(mef_dir), "--drug-sources", "atc", "--no-progress"])
    result = run_protocol(config, "cold-drug", n_folds=5, methods=["feature_ridge", "popularity"], out_dir=tmp_path)
    means = result.results.groupby("method")[["auroc", "aupr", "ndcg@10"]].mean()

    # The ridge reference of the quality issue scores AUPR 0.311 and NDCG@10 0.511 under this protocol.
    assert means.loc["feature_ridge", "aupr"] > 0.30
    assert means.loc["feature_ridge", "ndcg@10"] > 0.50
    assert (means.loc["feature_ridge"] > means.loc["popularity"]).all()

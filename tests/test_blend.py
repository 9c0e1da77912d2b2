"""The EASE blend of HybridMF: quantile grids, the empirical CDF, rankings, checkpoints and the CLI option."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import rankdata

from hybridmf.config import FitConfig, parse_config
from hybridmf.data.interactions import InteractionData
from hybridmf.data.splits import make_split
from hybridmf.data.synthetic import powerlaw_pairs
from hybridmf.evaluation.baselines import EASE
from hybridmf.model.blend import blend_logits, empirical_cdf, quantile_grid, within_row_zscores
from hybridmf.model.module import HybridMF
from hybridmf.scoring import Ranker, load_model
from hybridmf.training import run_fit, train_split

N_ROWS, N_COLS = 30, 20


def _pairs() -> np.ndarray:
    return powerlaw_pairs(N_ROWS, N_COLS, 150, np.random.default_rng(0))


def _blended_model(weight: float, l2: float = 5.0, mode: str = "rank") -> HybridMF:
    """A randomly initialised model with a bias, blended on the synthetic pairs."""
    torch.manual_seed(0)
    model = HybridMF(
        n_rows=N_ROWS, n_cols=N_COLS, k=3, bias=True, blend="ease", blend_weight=weight, blend_ease_l2=l2, blend_mode=mode
    )
    with torch.no_grad():
        model.row_bias.weight.normal_()
        model.col_bias.weight.normal_()
    model.eval()
    model.fit_blend(_pairs())
    return model


def _candidate_mask(pairs: np.ndarray) -> np.ndarray:
    """Return the ``(R, C)`` mask of the pairs the reference quantiles come from."""
    mask = np.ones((N_ROWS, N_COLS), dtype=bool)
    mask[pairs[:, 0], pairs[:, 1]] = False
    mask[np.setdiff1d(np.arange(N_ROWS), pairs[:, 0])] = False
    return mask


def _synthetic_data() -> InteractionData:
    pairs = _pairs()
    return InteractionData(
        rows=pd.DataFrame({"id": [f"r{i}" for i in range(N_ROWS)], "name": [f"row {i}" for i in range(N_ROWS)]}),
        cols=pd.DataFrame({"id": [f"c{i}" for i in range(N_COLS)], "name": [f"col {i}" for i in range(N_COLS)]}),
        pairs=np.unique(pairs, axis=0),
    )


def _config(tmp_path: Path, **options) -> FitConfig:
    defaults = dict(
        k=3, max_epochs=2, batch_size=100_000, lr=0.05, blend="ease", blend_ease_l2=5.0, progress=False,
        accelerator="cpu", out=str(tmp_path),
    )
    return FitConfig(**{**defaults, **options})


# ----------------------------------------------------------------------------------------
# Quantile grid and CDF


def test_quantile_grid_matches_torch_quantile():
    values = torch.randn(257, generator=torch.Generator().manual_seed(1))
    levels = torch.linspace(0, 1, 11, dtype=torch.float64)

    expected = torch.quantile(values.double(), levels).float()
    assert torch.allclose(quantile_grid(values, size=11), expected, atol=1e-6)


def test_cdf_maps_grid_ends_to_bounds():
    grid = quantile_grid(torch.randn(500, generator=torch.Generator().manual_seed(2)))
    levels = empirical_cdf(grid[[0, -1]], grid)

    assert levels.tolist() == [0.0, 1.0]


def test_cdf_is_monotone_and_bounded():
    grid = quantile_grid(torch.randn(500, generator=torch.Generator().manual_seed(3)))
    scores = torch.linspace(-6, 6, 10_001)
    levels = empirical_cdf(scores, grid)

    assert (levels.diff() >= 0).all()
    assert levels.min() == 0.0
    assert levels.max() == 1.0


def test_cdf_interpolates_and_steps_at_ties():
    grid = torch.tensor([0.0, 1.0, 1.0, 1.0, 2.0])
    levels = empirical_cdf(torch.tensor([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]), grid)

    assert levels.tolist() == [0.0, 0.0, 0.125, 0.75, 0.875, 1.0, 1.0]


def test_blend_logits_is_logit_of_weighted_levels():
    grid = torch.tensor([0.0, 1.0, 2.0])
    blended = blend_logits(torch.tensor([0.5, 2.0]), torch.tensor([2.0, 0.0]), grid, grid, weight=0.25)

    expected = torch.logit(torch.tensor([0.75 * 0.25 + 0.25 * 1.0, 0.75 * 1.0 + 0.25 * 0.0]))
    assert torch.allclose(blended, expected)


# ----------------------------------------------------------------------------------------
# Rankings of the blended model


def _global_ranks(scores: np.ndarray) -> np.ndarray:
    """Return the ranks (ties share the lowest) of the candidate pairs' scores, pooled over rows."""
    return rankdata(scores[_candidate_mask(_pairs())], "min")


def _blended_and_network_scores(weight: float) -> tuple[np.ndarray, np.ndarray]:
    model = _blended_model(weight=weight)
    rows = torch.arange(N_ROWS)
    with torch.no_grad():
        return model.score_rows(rows).numpy(), model.network_logits(rows).numpy()


def test_weight_zero_ranks_as_the_network():
    blended, network = _blended_and_network_scores(weight=0.0)

    assert np.array_equal(_global_ranks(blended), _global_ranks(network))


def test_weight_one_ranks_as_ease_baseline():
    blended, _ = _blended_and_network_scores(weight=1.0)
    ease = EASE(l2=5.0, fallback="zeros").fit(_pairs(), N_ROWS, N_COLS).score_rows(torch.arange(N_ROWS)).numpy()

    assert np.array_equal(_global_ranks(blended), _global_ranks(ease))


def test_half_weight_differs_from_network():
    blended, network = _blended_and_network_scores(weight=0.5)

    assert not np.array_equal(_global_ranks(blended), _global_ranks(network))


def test_blended_scores_are_finite_logits():
    model = _blended_model(weight=0.5)
    with torch.no_grad():
        blended = model.score_rows(torch.arange(N_ROWS))

    assert torch.isfinite(blended).all()
    assert blended.abs().max() <= torch.logit(torch.tensor(1 - 1e-6, dtype=torch.float64)).item() + 1e-4


def test_pair_scores_equal_row_scores():
    model = _blended_model(weight=0.5)
    rows = torch.arange(N_ROWS).repeat_interleave(N_COLS)
    cols = torch.arange(N_COLS).repeat(N_ROWS)
    with torch.no_grad():
        matrix = model.score_rows(torch.arange(N_ROWS))  # (R, C)
        pairs = model.score_pairs(rows, cols).view(N_ROWS, N_COLS)  # (R, C)

    assert torch.allclose(matrix, pairs, atol=1e-5)


# ----------------------------------------------------------------------------------------
# Row mode: the part's within-row z-scores added to the network's logits


def test_within_row_zscores_use_candidates():
    scores = torch.tensor([[9.0, 1.0, 3.0], [2.0, 2.0, 2.0]])
    candidates = torch.tensor([[False, True, True], [True, True, True]])

    z = within_row_zscores(scores, candidates)

    assert torch.allclose(z[0], torch.tensor([7.0, -1.0, 1.0]))  # mean 2, spread 1 from columns 1 and 2
    assert torch.equal(z[1], torch.zeros(3))


def test_row_mode_keeps_row_means_and_ease_order():
    model = _blended_model(weight=0.5, mode="row")
    rows = torch.arange(N_ROWS)
    candidates = torch.from_numpy(_candidate_mask(_pairs()))
    with torch.no_grad():
        blended, network = model.score_rows(rows), model.network_logits(rows)
    ease = EASE(l2=5.0, fallback="zeros").fit(_pairs(), N_ROWS, N_COLS).score_rows(rows)
    shift = (blended - network).double()

    assert float(model.blend_model_scale) > 0
    for row in range(N_ROWS):
        mask = candidates[row]
        if mask.any():
            assert abs(float(shift[row][mask].mean())) < 1e-5
            # The shift orders the row's columns as EASE does.
            assert np.array_equal(rankdata(shift[row].numpy(), "min"), rankdata(ease[row].numpy(), "min"))


def test_row_mode_weight_zero_and_pairs():
    rows = torch.arange(N_ROWS)
    with torch.no_grad():
        zero = _blended_model(weight=0.0, mode="row")
        assert torch.allclose(zero.score_rows(rows), zero.network_logits(rows))
        model = _blended_model(weight=0.7, mode="row")
        matrix = model.score_rows(rows)
        pairs = model.score_pairs(rows.repeat_interleave(N_COLS), torch.arange(N_COLS).repeat(N_ROWS))
    assert torch.allclose(matrix, pairs.view(N_ROWS, N_COLS), atol=1e-5)


def test_row_mode_ridge_new_rows():
    torch.manual_seed(0)
    features = torch.rand(N_ROWS, 4)
    model = HybridMF(
        n_rows=N_ROWS, n_cols=N_COLS, k=3, row_ids=False, row_feature_dim=4, blend="ridge", blend_weight=0.5,
        blend_mode="row",
    ).eval()
    model.set_features(row_features=features)
    model.fit_blend(_pairs())
    with torch.no_grad():
        assert torch.allclose(model.score_new_rows(features[:3]), model.score_rows(torch.arange(3)), atol=1e-5)
        assert not torch.allclose(model.score_new_rows(features[:3]), model.network_logits(torch.arange(3)))


def test_row_mode_reloads_from_checkpoint(tmp_path: Path):
    data = _synthetic_data()
    split = make_split(data.pairs, data.n_rows, "warm", 0.2, seed=0)
    run = train_split(_config(tmp_path, blend_mode="row"), data, split, tmp_path)
    rows = torch.arange(N_ROWS)
    reloaded = HybridMF.load_from_checkpoint(run.checkpoint, map_location="cpu").eval()

    assert reloaded.hparams.blend_mode == "row"
    with torch.no_grad():
        assert torch.equal(reloaded.score_rows(rows), run.model.eval().score_rows(rows))
        assert not torch.equal(reloaded.score_rows(rows), reloaded.network_logits(rows))


def test_unfitted_blend_returns_network_logits():
    torch.manual_seed(0)
    model = HybridMF(n_rows=N_ROWS, n_cols=N_COLS, k=3, blend="ease").eval()
    rows = torch.arange(5)

    assert not model.blend_fitted
    assert torch.equal(model.score_rows(rows), model.network_logits(rows))


def test_new_rows_get_network_logits():
    torch.manual_seed(0)
    model = HybridMF(n_rows=N_ROWS, n_cols=N_COLS, k=3, row_feature_dim=4, blend="ease", blend_ease_l2=5.0).eval()
    model.set_features(row_features=torch.rand(N_ROWS, 4))
    features = torch.rand(2, 4)
    before = model.score_new_rows(features)
    model.fit_blend(_pairs())

    assert model.blend_fitted
    assert torch.equal(model.score_new_rows(features), before)


# ----------------------------------------------------------------------------------------
# Option checks


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"blend": "mean"}, "invalid value 'mean' for blend"),
        ({"blend_weight": -0.1}, r"blend_weight must be a number in \[0, 1\]"),
        ({"blend_weight": 1.5}, r"blend_weight must be a number in \[0, 1\]"),
        ({"blend_weight": math.nan}, r"blend_weight must be a number in \[0, 1\]"),
        ({"blend_ease_l2": 0.0}, "invalid blend_ease_l2: l2 must be a finite number > 0, got 0.0"),
        ({"blend_mode": "mean"}, "invalid value 'mean' for blend_mode"),
    ],
)
def test_fit_config_rejects_invalid_blend_options(options, message):
    with pytest.raises(ValueError, match=message):
        FitConfig(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_cols": 20_001, "blend": "ease"}, "at most 20000 columns, got n_cols=20001"),
        ({"n_cols": 4, "blend": "mean"}, "blend must be one of 'none', 'ease', 'ridge', got 'mean'"),
        ({"n_cols": 4, "blend": "ease", "blend_weight": 2.0}, r"blend_weight must be a number in \[0, 1\]"),
        ({"n_cols": 4, "blend": "ease", "blend_mode": "mean"}, "blend_mode must be one of 'rank', 'row', got 'mean'"),
    ],
)
def test_model_rejects_invalid_blend_options(options, message):
    with pytest.raises(ValueError, match=message):
        HybridMF(n_rows=2, **options)


def test_large_column_count_without_blend_is_accepted():
    assert HybridMF(n_rows=2, n_cols=20_001, k=1).hparams.blend == "none"


@pytest.mark.parametrize(
    ("blend", "pairs", "message"),
    [
        ("none", np.array([[0, 0]]), "fit_blend needs a model built with blend='ease'"),
        ("ease", np.empty((0, 2), dtype=np.int64), "train_pairs is empty"),
        ("ease", np.array([[0, 99]]), r"column index outside \[0, n_cols\)"),
    ],
)
def test_fit_blend_rejects_invalid_input(blend, pairs, message):
    model = HybridMF(n_rows=3, n_cols=4, k=2, blend=blend)
    with pytest.raises(ValueError, match=message):
        model.fit_blend(pairs)


def test_blend_flags_parse_from_command_line():
    config = parse_config(["--blend", "ease", "--blend-weight", "0.3", "--blend-ease-l2", "50"])

    assert (config.blend, config.blend_weight, config.blend_ease_l2) == ("ease", 0.3, 50.0)


# ----------------------------------------------------------------------------------------
# Training, checkpoints and resuming


def test_trained_blend_reloads_with_identical_scores(tmp_path: Path):
    data = _synthetic_data()
    split = make_split(data.pairs, data.n_rows, "warm", 0.2, seed=0)
    run = train_split(_config(tmp_path), data, split, tmp_path)
    rows = torch.arange(N_ROWS)
    reloaded = HybridMF.load_from_checkpoint(run.checkpoint, map_location="cpu").eval()
    last = HybridMF.load_from_checkpoint(run.last_checkpoint, map_location="cpu")

    assert run.model.blend_fitted
    assert reloaded.blend_fitted
    assert last.blend_fitted  # last.ckpt, the usual final model, is blended too
    with torch.no_grad():
        expected = run.model.score_rows(rows)
        assert torch.equal(reloaded.score_rows(rows), expected)
        assert torch.equal(load_model(run.checkpoint).score_rows(rows), expected)
        assert not torch.equal(expected, run.model.network_logits(rows))
    ranker = Ranker(load_model(run.checkpoint))
    table = ranker.score_pairs(["r0", "r1"], ["c3", "c4"])
    assert np.allclose(table["score"].to_numpy(), expected[[0, 1], [3, 4]].numpy(), atol=1e-5)


def test_training_start_clears_fitted_blend():
    model = _blended_model(weight=0.5)
    model.on_train_start()
    rows = torch.arange(4)

    assert not model.blend_fitted
    assert torch.equal(model.score_rows(rows), model.network_logits(rows))


def test_blend_uses_the_given_pairs(tmp_path: Path):
    data = _synthetic_data()
    split = make_split(data.pairs, data.n_rows, "warm", 0.2, seed=0)
    run = train_split(_config(tmp_path), data, split, tmp_path, blend_pairs=data.pairs)

    assert int(run.model.blend_interactions.sum()) == len(data.pairs)


def test_resume_from_blended_last_checkpoint(tmp_path: Path):
    data = _synthetic_data()
    split = make_split(data.pairs, data.n_rows, "warm", 0.0, seed=0)
    first = train_split(_config(tmp_path, val_fraction=0.0), data, split, tmp_path)
    assert first.checkpoint == first.last_checkpoint
    assert HybridMF.load_from_checkpoint(first.last_checkpoint).blend_fitted

    resumed = train_split(
        _config(tmp_path, val_fraction=0.0, max_epochs=3, resume=first.last_checkpoint), data, split, tmp_path
    )
    stored = torch.load(resumed.checkpoint, map_location="cpu", weights_only=True)
    assert resumed.selected_epoch == 3
    assert stored["state_dict"]["blend_is_fitted"].item()
    assert "optimizer_states" in stored


def test_finished_run_resumes_from_copied_folder(tmp_path: Path):
    data = _synthetic_data()
    split = make_split(data.pairs, data.n_rows, "warm", 0.0, seed=0)
    first = train_split(_config(tmp_path / "run", val_fraction=0.0), data, split, tmp_path / "run")
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    copied = tmp_path / "copy" / "checkpoints" / "last.ckpt"

    resumed = train_split(
        _config(tmp_path / "copy", val_fraction=0.0, resume=str(copied)), data, split, tmp_path / "copy"
    )

    assert first.selected_epoch == 2  # max_epochs of _config
    assert resumed.selected_epoch == 2
    assert Path(resumed.last_checkpoint) == copied.resolve()
    rows = torch.arange(N_ROWS)
    with torch.no_grad():
        assert torch.equal(resumed.model.score_rows(rows), first.model.score_rows(rows))


def test_resume_with_other_blend_weight_rejected(tmp_path: Path):
    data = _synthetic_data()
    split = make_split(data.pairs, data.n_rows, "warm", 0.0, seed=0)
    first = train_split(_config(tmp_path, val_fraction=0.0), data, split, tmp_path)
    before = Path(first.last_checkpoint).read_bytes()

    with pytest.raises(ValueError, match=r"other blend options \(blend_weight: 0.5 in the checkpoint, 0.9 now\)"):
        train_split(
            _config(tmp_path, val_fraction=0.0, blend_weight=0.9, resume=first.last_checkpoint), data, split, tmp_path
        )
    assert Path(first.last_checkpoint).read_bytes() == before


def test_best_checkpoint_blended_too(tmp_path: Path):
    data = _synthetic_data()
    split = make_split(data.pairs, data.n_rows, "warm", 0.2, seed=0)
    run = train_split(_config(tmp_path, select_epoch="last", max_epochs=3), data, split, tmp_path)
    best_files = sorted((tmp_path / "checkpoints").glob("best-*.ckpt"))

    assert best_files
    for path in best_files:
        assert HybridMF.load_from_checkpoint(path, map_location="cpu").blend_fitted, path.name
    assert HybridMF.load_from_checkpoint(run.checkpoint, map_location="cpu").blend_fitted


def test_fit_cli_with_blend_writes_metrics(tmp_path: Path):
    interactions = tmp_path / "pairs.csv"
    pairs = np.unique(_pairs(), axis=0)
    pd.DataFrame({"row_id": [f"r{i}" for i in pairs[:, 0]], "col_id": [f"c{j}" for j in pairs[:, 1]]}).to_csv(
        interactions, index=False
    )
    config = parse_config(
        ["--interactions", str(interactions), "--blend", "ease", "--blend-ease-l2", "5", "--max-epochs", "2", "--k", "3",
         "--batch-size", "100000", "--no-progress", "--accelerator", "cpu", "--out", str(tmp_path / "run")]
    )
    metrics = run_fit(config)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())

    assert written["blend"] == "ease"
    assert 0.0 <= written["auroc"] <= 1.0
    assert math.isnan(written["accuracy"])
    assert load_model(metrics["checkpoint"]).blend_fitted


def test_blend_on_mef_beats_popularity(mef_dir: Path, tmp_path: Path):
    config = FitConfig(
        data_dir=str(mef_dir), k=16, batch_size=1_000_000, optimizer="adam", lr=0.02, pos_weight=20.0, l2=0.3,
        bias=True, max_epochs=30, val_every_n_epochs=10, blend="ease", progress=False, accelerator="cpu",
        out=str(tmp_path),
    )
    metrics = run_fit(config)

    assert metrics["auroc"] > metrics["popularity_auroc"]
    assert metrics["ndcg@10"] > metrics["popularity_ndcg@10"]
    assert load_model(metrics["checkpoint"]).blend_fitted

"""Tests of the cross-validation folds, the inner split and the absence of fold leaks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hybridmf.config import FitConfig
from hybridmf.data.interactions import InteractionData
from hybridmf.data.splits import Split, inner_split, make_folds
from hybridmf.evaluation.baselines import Popularity
from hybridmf.evaluation.protocols import default_methods, evaluate_fold, protocol_folds, run_protocol
from hybridmf.training import TrainedModel, build_trainer, trained_entities

N_ROWS, N_COLS = 20, 15
PAIRS = np.array([[r, c] for r in range(N_ROWS) for c in range(N_COLS) if (r + 2 * c) % 3 == 0], dtype=np.int64)


def _keys(pairs: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, np.asarray(pairs).tolist()))


def toy_data() -> InteractionData:
    """A 20 x 15 data set with SMILES on the rows and a feature table on each side."""
    rows = pd.DataFrame({
        "id": [f"d{i}" for i in range(N_ROWS)],
        "name": [f"drug {i}" for i in range(N_ROWS)],
        "smiles": ["C" * (1 + i % 4) + "O" * (i % 2) for i in range(N_ROWS)],
    })
    cols = pd.DataFrame({"id": [f"a{j}" for j in range(N_COLS)], "name": [f"adr {j}" for j in range(N_COLS)]})
    row_table = pd.DataFrame({"x": np.arange(N_ROWS, dtype=float)}, index=rows["id"])
    col_table = pd.DataFrame({"y": np.arange(N_COLS, dtype=float)}, index=cols["id"])
    return InteractionData(rows, cols, PAIRS, name="toy", row_features={"r": row_table}, col_features={"c": col_table})


# ---------------------------------------------------------------------------------------
# Folds


def test_warm_folds_are_disjoint_and_cover_every_pair():
    folds = make_folds(PAIRS, N_ROWS, "warm", n_folds=4, seed=1)
    held_out = [_keys(fold.val_pairs) for fold in folds]

    for index, fold in enumerate(folds):
        assert not _keys(fold.train_pairs) & held_out[index]
        assert _keys(fold.train_pairs) | held_out[index] == _keys(PAIRS)
        assert fold.val_rows.tolist() == list(range(N_ROWS))
        for other in range(index + 1, len(folds)):
            assert not held_out[index] & held_out[other]
    assert set().union(*held_out) == _keys(PAIRS)
    assert max(map(len, held_out)) - min(map(len, held_out)) <= 1


def test_cold_folds_partition_rows_and_hide_their_pairs():
    folds = make_folds(PAIRS, N_ROWS, "cold", n_folds=3, seed=1)
    test_rows = [fold.val_rows.tolist() for fold in folds]

    assert sorted(sum(test_rows, [])) == list(range(N_ROWS))
    for fold in folds:
        assert not np.isin(fold.train_pairs[:, 0], fold.val_rows).any()
        assert _keys(fold.val_pairs) == {pair for pair in _keys(PAIRS) if pair[0] in set(fold.val_rows.tolist())}
        assert not np.isin(fold.train_rows(N_ROWS), fold.val_rows).any()
    assert set().union(*(_keys(fold.val_pairs) for fold in folds)) == _keys(PAIRS)


def test_cold_adr_folds_partition_columns_of_original():
    data = toy_data()
    view, folds = protocol_folds(data, "cold-adr", n_folds=5, seed=0)

    assert (view.n_rows, view.n_cols) == (N_COLS, N_ROWS)
    assert sorted(np.concatenate([fold.val_rows for fold in folds]).tolist()) == list(range(N_COLS))
    for fold in folds:
        original_pairs = fold.val_pairs[:, ::-1]  # (P, 2) back to (drug, ADR)
        expected = {pair for pair in _keys(PAIRS) if pair[1] in set(fold.val_rows.tolist())}
        assert _keys(original_pairs) == expected


def test_folds_drop_duplicate_pairs():
    repeated = np.concatenate([PAIRS, PAIRS[:7]])  # (P + 7, 2)
    folds = make_folds(repeated, N_ROWS, "warm", n_folds=3, seed=0)

    assert sum(len(fold.val_pairs) for fold in folds) == len(PAIRS)


def test_folds_reproducible_from_seed():
    first = make_folds(PAIRS, N_ROWS, "warm", n_folds=3, seed=5)
    again = make_folds(PAIRS, N_ROWS, "warm", n_folds=3, seed=5)
    other = make_folds(PAIRS, N_ROWS, "warm", n_folds=3, seed=6)

    assert all(np.array_equal(a.val_pairs, b.val_pairs) for a, b in zip(first, again))
    assert not np.array_equal(first[0].val_pairs, other[0].val_pairs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "random"}, r"split kind must be one of \('warm', 'cold'\), got 'random'"),
        ({"n_folds": 1}, r"n_folds must be an integer from 2 to the number of unique pairs \(100\), got 1"),
        ({"kind": "cold", "n_folds": 21}, r"n_folds must be an integer from 2 to the number of rows \(20\), got 21"),
        ({"n_folds": 2.5}, r"n_folds must be an integer .* got 2.5"),
    ],
)
def test_make_folds_rejects_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_folds(PAIRS, N_ROWS, **kwargs)


def test_make_folds_rejects_wrong_pair_shape():
    with pytest.raises(ValueError, match=r"pairs must have shape \(P, 2\), got \(100, 3\)"):
        make_folds(np.zeros((100, 3), dtype=np.int64), N_ROWS)


@pytest.mark.parametrize("protocol", ["cold", "cold_drug", ""])
def test_unknown_protocol_is_rejected(protocol):
    with pytest.raises(ValueError, match=r"protocol must be one of warm, cold-drug, cold-adr, got"):
        protocol_folds(toy_data(), protocol)


def test_transpose_swaps_tables_pairs_and_features():
    data = toy_data()
    flipped = data.transpose()

    assert flipped.rows is data.cols and flipped.cols is data.rows
    assert _keys(flipped.pairs) == {(c, r) for r, c in _keys(PAIRS)}
    assert np.array_equal(flipped.pairs, np.unique(flipped.pairs, axis=0))
    assert list(flipped.row_features) == ["c"] and list(flipped.col_features) == ["r"]
    assert np.array_equal(flipped.transpose().pairs, data.pairs)


# ---------------------------------------------------------------------------------------
# Inner split


@pytest.mark.parametrize("kind", ["warm", "cold"])
def test_inner_split_stays_inside_training_part(kind):
    outer = make_folds(PAIRS, N_ROWS, kind, n_folds=4, seed=0)[1]
    inner = inner_split(outer, N_ROWS, val_fraction=0.25, seed=3)

    assert _keys(inner.train_pairs) | _keys(inner.val_pairs) == _keys(outer.train_pairs)
    assert not _keys(inner.train_pairs) & _keys(inner.val_pairs)
    assert not (_keys(inner.train_pairs) | _keys(inner.val_pairs)) & _keys(outer.val_pairs)
    assert inner.kind == kind


def test_inner_cold_split_keeps_test_rows_out_of_training():
    outer = make_folds(PAIRS, N_ROWS, "cold", n_folds=4, seed=0)[2]
    inner = inner_split(outer, N_ROWS, val_fraction=0.25, seed=0)
    trained_rows = inner.train_rows(N_ROWS)

    assert inner.excluded_rows.tolist() == outer.val_rows.tolist()
    assert not np.isin(trained_rows, outer.val_rows).any()
    assert not np.isin(trained_rows, inner.val_rows).any()
    assert not np.isin(inner.val_rows, outer.val_rows).any()
    assert len(trained_rows) + len(inner.val_rows) + len(outer.val_rows) == N_ROWS


def test_inner_cold_split_without_validation_still_excludes_test_rows():
    outer = make_folds(PAIRS, N_ROWS, "cold", n_folds=4, seed=0)[0]
    inner = inner_split(outer, N_ROWS, val_fraction=0.0)

    assert not inner.has_validation
    assert not np.isin(inner.train_rows(N_ROWS), outer.val_rows).any()


def test_inner_warm_split_excludes_no_rows():
    outer = make_folds(PAIRS, N_ROWS, "warm", n_folds=4, seed=0)[0]

    assert inner_split(outer, N_ROWS, val_fraction=0.1).train_rows(N_ROWS).tolist() == list(range(N_ROWS))


# ---------------------------------------------------------------------------------------
# No fold leak


class MemorisingScorer:
    """Scores 1 for its training pairs and 0 elsewhere, and records what it was fitted on."""

    fitted: list[np.ndarray] = []

    def fit(self, train_pairs, n_rows, n_cols, row_features=None):
        self.matrix = torch.zeros(n_rows, n_cols)
        self.matrix[train_pairs[:, 0], train_pairs[:, 1]] = 1.0
        MemorisingScorer.fitted.append(np.array(train_pairs))
        return self

    def score_rows(self, rows):
        return self.matrix[rows]


class RecordingPopularity(Popularity):
    """Popularity that keeps every fitted instance."""

    instances: list[Popularity] = []

    def _fit(self, train_matrix, row_features):
        RecordingPopularity.instances.append(self)


@pytest.mark.parametrize("protocol", ["warm", "cold-drug", "cold-adr"])
def test_baselines_see_only_training_pairs(protocol, tmp_path: Path):
    MemorisingScorer.fitted, RecordingPopularity.instances = [], []
    data = toy_data()
    result = run_protocol(
        FitConfig(seed=2), protocol, n_folds=3, methods=["memorise", "popularity"], out_dir=tmp_path,
        data=data, baselines={"memorise": MemorisingScorer, "popularity": RecordingPopularity},
    )
    view, folds = protocol_folds(data, protocol, n_folds=3, seed=2)
    memorised = result.results[result.results["method"] == "memorise"].set_index("fold")

    for fold, split in enumerate(folds):
        assert _keys(MemorisingScorer.fitted[fold]) == _keys(split.train_pairs)
        counts = np.bincount(split.train_pairs[:, 1], minlength=view.n_cols)
        assert RecordingPopularity.instances[fold].popularity_.tolist() == counts.tolist()
        # Every candidate scores 0: the training pairs, and only they, are masked.
        n_train_in_rows = np.isin(split.train_pairs[:, 0], split.val_rows).sum()
        assert memorised.loc[fold, "n_candidates"] == len(split.val_rows) * view.n_cols - n_train_in_rows
        assert memorised.loc[fold, "n_positives"] == len(split.val_pairs)
        assert memorised.loc[fold, "auroc"] == 0.5


def _fake_train_split(calls: list):
    """Return a stand-in for train_split that records its arguments and memorises pairs."""

    def train_split(config, data, split, out_dir, blend_pairs=None):
        calls.append((config, data, split))
        scorer = MemorisingScorer().fit(split.train_pairs, data.n_rows, data.n_cols)
        return TrainedModel(scorer, "best.ckpt", "last.ckpt", 3, 2, trainer=None, datamodule=None)

    return train_split


@pytest.mark.parametrize("protocol", ["warm", "cold-drug", "cold-adr"])
def test_model_trains_on_inner_split_of_training_part(protocol, tmp_path: Path, monkeypatch):
    calls: list = []
    monkeypatch.setattr("hybridmf.evaluation.protocols.train_split", _fake_train_split(calls))
    data = toy_data()
    config = FitConfig(seed=1, val_fraction=0.2, row_ids=True, col_ids=False)
    result = run_protocol(config, protocol, n_folds=2, methods=["model"], out_dir=tmp_path, data=data)
    view, folds = protocol_folds(data, protocol, n_folds=2, seed=1)

    assert len(calls) == 2
    for (train_config, train_data, inner), outer in zip(calls, folds):
        assert train_data.n_rows == view.n_rows
        assert _keys(inner.train_pairs) | _keys(inner.val_pairs) == _keys(outer.train_pairs)
        assert not np.isin(inner.train_rows(view.n_rows), outer.cold_rows).any()
        swapped = protocol == "cold-adr"
        assert (train_config.row_ids, train_config.col_ids) == ((False, True) if swapped else (True, False))
    assert result.results["epochs"].tolist() == [3, 3]
    assert result.results["selected_epoch"].tolist() == [2, 2]
    assert "best inner-validation AUROC" in result.selection


def test_evaluate_fold_masks_exactly_training_pairs():
    split = make_folds(PAIRS, N_ROWS, "warm", n_folds=4, seed=0)[0]
    scorer = MemorisingScorer().fit(split.train_pairs, N_ROWS, N_COLS)
    result = evaluate_fold(scorer.score_rows, split, N_ROWS, N_COLS, k=5, precision_ks=(1, 5))

    assert result.metrics["n_candidates"] == N_ROWS * N_COLS - len(split.train_pairs)
    assert result.metrics["auroc"] == 0.5
    assert result.curves is None
    assert sorted(result.precision_at_k) == [1, 5]


# ---------------------------------------------------------------------------------------
# Methods and trainer


@pytest.mark.parametrize(
    ("protocol", "features", "expected"),
    [
        ("warm", True, ("model", "popularity", "row_knn", "column_knn", "ease")),
        ("cold-drug", True, ("model", "popularity", "feature_knn")),
        ("cold-adr", False, ("model", "popularity")),
    ],
)
def test_default_methods(protocol, features, expected):
    assert default_methods(protocol, features) == expected


@pytest.mark.parametrize(
    ("protocol", "methods", "message"),
    [
        ("warm", ["model", "svd"], r"unknown method 'svd'; valid methods: model, popularity"),
        ("cold-adr", ["feature_knn"], r"method 'feature_knn' needs row features, but the rows have no 'smiles'"),
    ],
)
def test_run_protocol_rejects_invalid_methods(protocol, methods, message, tmp_path: Path):
    with pytest.raises(ValueError, match=message):
        run_protocol(FitConfig(), protocol, n_folds=2, methods=methods, out_dir=tmp_path, data=toy_data())


def test_run_protocol_rejects_invalid_curve_fold(tmp_path: Path):
    with pytest.raises(ValueError, match=r"curve_fold must be a fold index from 0 to 1, got 2"):
        run_protocol(FitConfig(), "warm", n_folds=2, methods=["popularity"], out_dir=tmp_path, data=toy_data(),
                     curve_fold=2)


def test_trainer_stops_early_with_patience(tmp_path: Path):
    trainer, _ = build_trainer(dataclasses.replace(FitConfig(), patience=2), tmp_path, monitor=True)
    unmonitored, _ = build_trainer(dataclasses.replace(FitConfig(), patience=2), tmp_path, monitor=False)

    assert [callback.patience for callback in trainer.early_stopping_callbacks] == [2]
    assert unmonitored.early_stopping_callbacks == []


def test_split_excluded_rows_default_is_empty():
    split = Split(PAIRS, PAIRS[:0], np.arange(3))

    assert split.excluded_rows.dtype == np.int64 and len(split.excluded_rows) == 0
    assert split.train_rows(4).tolist() == [0, 1, 2, 3]


def test_trained_entities_full_grid_keeps_columns_without_positives():
    data = toy_data()
    outer = make_folds(PAIRS, N_ROWS, "cold", n_folds=4, seed=0)[0]
    inner = inner_split(outer, N_ROWS, val_fraction=0.25)
    rows, cols = trained_entities(FitConfig(negatives="full"), data, inner)

    assert rows.tolist() == inner.train_rows(N_ROWS).tolist()
    assert cols.tolist() == list(range(N_COLS))


def test_trained_entities_sampled_needs_positive_rows():
    data = toy_data()
    split = Split(np.array([[0, 1], [2, 3]]), np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.int64))
    config = dataclasses.replace(FitConfig(), negatives="sampled")
    rows, cols = trained_entities(config, data, split)

    assert rows.tolist() == [0, 2]
    assert cols.tolist() == list(range(N_COLS))

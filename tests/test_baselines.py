"""Tests for hybridmf.evaluation.baselines on tiny data with exact expected scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hybridmf.evaluation.baselines import (
    BASELINES,
    EASE,
    ColumnKNN,
    FeatureKNN,
    Popularity,
    RowKNN,
    make_baseline,
)
from hybridmf.evaluation.metrics import evaluate_scores

BLOCK_SIZE = 4
N_BLOCKS = 2
N_ROWS = N_COLS = BLOCK_SIZE * N_BLOCKS


def block_data() -> tuple[np.ndarray, np.ndarray]:
    """Build two diagonal blocks of 4 rows x 4 columns, where row i holds out column i.

    Returns:
        The training pairs and the held-out column of each row.
    """
    pairs = []
    for row in range(N_ROWS):
        block = row // BLOCK_SIZE
        for column in range(block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE):
            if column != row:
                pairs.append((row, column))
    return np.array(pairs, dtype=np.int64), np.arange(N_ROWS)


def block_features() -> np.ndarray:
    """Build binary features that identify each row's block, plus one bit per row."""
    features = np.zeros((N_ROWS, N_BLOCKS + N_ROWS), dtype=np.float32)
    features[np.arange(N_ROWS), np.arange(N_ROWS) // BLOCK_SIZE] = 1.0
    features[np.arange(N_ROWS), N_BLOCKS + np.arange(N_ROWS)] = 1.0
    return features


def dense_matrix(pairs: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    matrix = np.zeros((n_rows, n_cols))
    matrix[pairs[:, 0], pairs[:, 1]] = 1.0
    return matrix


def random_pairs(n_rows: int, n_cols: int, density: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.argwhere(rng.random((n_rows, n_cols)) < density).astype(np.int64)


RANKING_BASELINES = [
    pytest.param(lambda: RowKNN(n_neighbors=3), id="row_knn"),
    pytest.param(lambda: ColumnKNN(n_neighbors=3), id="column_knn"),
    pytest.param(lambda: EASE(l2=1.0), id="ease"),
    pytest.param(lambda: FeatureKNN(n_neighbors=3, metric="tanimoto"), id="feature_knn_tanimoto"),
    pytest.param(lambda: FeatureKNN(n_neighbors=3, metric="cosine"), id="feature_knn_cosine"),
]


@pytest.mark.parametrize("factory", RANKING_BASELINES)
def test_held_out_column_ranks_first(factory) -> None:
    pairs, held_out = block_data()
    baseline = factory().fit(pairs, N_ROWS, N_COLS, row_features=block_features())

    scores = baseline.score_rows(np.arange(N_ROWS))
    candidates = torch.from_numpy(dense_matrix(pairs, N_ROWS, N_COLS) == 0)
    positives = torch.zeros(N_ROWS, N_COLS, dtype=torch.bool)
    positives[torch.arange(N_ROWS), torch.from_numpy(held_out)] = True

    for row in range(N_ROWS):
        candidate_scores = scores[row].masked_fill(~candidates[row], -torch.inf)
        other_best = candidate_scores.masked_fill(positives[row], -torch.inf).max()
        assert candidate_scores[held_out[row]] > other_best, row
    result = evaluate_scores(scores, candidates, positives, k=1, threshold=None)
    assert result["hr@1"] == 1.0
    assert result["mrr"] == 1.0
    assert result["row_auroc"] == 1.0


def test_popularity_equals_column_counts() -> None:
    pairs = random_pairs(10, 7, density=0.4, seed=0)
    pairs_with_duplicate = np.concatenate([pairs, pairs[:1]])
    popularity = Popularity().fit(pairs_with_duplicate, 10, 7)

    scores = popularity.score_rows(np.array([0, 9, 3]))

    expected = np.bincount(pairs[:, 1], minlength=7).astype(np.float32)
    assert scores.shape == (3, 7)
    assert scores.dtype == torch.float32
    for row in range(3):
        np.testing.assert_array_equal(scores[row].numpy(), expected)


def test_ease_matches_numpy_closed_form() -> None:
    pairs = random_pairs(30, 12, density=0.3, seed=1)
    matrix = dense_matrix(pairs, 30, 12)
    l2 = 5.0

    precision = np.linalg.inv(matrix.T @ matrix + l2 * np.eye(12))
    weights = np.eye(12) - precision @ np.diag(1.0 / np.diag(precision))
    expected = matrix @ weights

    scores = EASE(l2=l2, fallback="zeros").fit(pairs, 30, 12).score_rows(np.arange(30))
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.diag(weights), 0.0, atol=1e-12)


def test_row_knn_matches_brute_force() -> None:
    pairs = random_pairs(9, 11, density=0.35, seed=2)
    matrix = dense_matrix(pairs, 9, 11)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    similarities = unit @ unit.T
    np.fill_diagonal(similarities, 0.0)

    # With every other row as a neighbour there is no tie at the cut-off.
    scores = RowKNN(n_neighbors=8, fallback="zeros").fit(pairs, 9, 11).score_rows(np.arange(9))
    np.testing.assert_allclose(scores.numpy(), similarities @ matrix, rtol=1e-5, atol=1e-6)


def test_column_knn_matches_brute_force() -> None:
    pairs = random_pairs(13, 8, density=0.35, seed=3)
    matrix = dense_matrix(pairs, 13, 8)
    norms = np.linalg.norm(matrix, axis=0, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    similarities = unit.T @ unit
    np.fill_diagonal(similarities, 0.0)

    scores = ColumnKNN(n_neighbors=7, fallback="zeros").fit(pairs, 13, 8).score_rows(np.arange(13))
    np.testing.assert_allclose(scores.numpy(), matrix @ similarities, rtol=1e-5, atol=1e-6)


def test_knn_keeps_only_top_neighbours() -> None:
    # Row 0 shares 2 columns with row 1 and 1 column with row 2.
    pairs = np.array([[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 3], [2, 2], [2, 4]])

    scores = RowKNN(n_neighbors=1).fit(pairs, 3, 5).score_rows(np.array([0]))

    assert scores[0, 3] > 0  # from row 1
    assert scores[0, 4] == 0  # row 2 is not among the top 1


def test_feature_knn_ignores_own_training_vector() -> None:
    """Column 5 belongs to row 0 alone, so any score on it would come from row 0 itself."""
    pairs = np.array([[0, 0], [0, 5], [1, 0], [1, 1], [2, 2]])
    features = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32)

    for metric in ("cosine", "tanimoto"):
        knn = FeatureKNN(n_neighbors=5, metric=metric).fit(pairs, 3, 6, row_features=features)
        scores = knn.score_rows(np.array([0]))
        assert scores[0, 5] == 0.0, metric
        assert scores[0, 0] == pytest.approx(1.0), metric  # row 1 has identical features
        assert scores[0, 1] == pytest.approx(1.0), metric


def test_feature_knn_cold_row_neighbours() -> None:
    """A cold row's neighbours are only rows with training positives."""
    # Rows 2 and 3 are cold. Row 3 has the same features as row 2 but no positives.
    pairs = np.array([[0, 0], [1, 1]])
    features = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [1, 0, 1, 0], [1, 0, 1, 0]], dtype=np.float32)

    knn = FeatureKNN(n_neighbors=1, metric="tanimoto").fit(pairs, 4, 2, row_features=features)
    scores = knn.score_rows(np.array([2]))

    # Tanimoto(row 2, row 0) = 1 / (2 + 2 - 1) = 1/3, and row 1 shares no feature.
    np.testing.assert_allclose(scores.numpy(), [[1.0 / 3.0, 0.0]], rtol=1e-6)


def test_feature_knn_tanimoto_matches_jaccard() -> None:
    rng = np.random.default_rng(4)
    fingerprints = (rng.random((10, 32)) < 0.3).astype(np.float32)
    pairs = random_pairs(10, 6, density=0.5, seed=4)
    matrix = dense_matrix(pairs, 10, 6)
    jaccard = np.zeros((10, 10))
    for first in range(10):
        for second in range(10):
            both = np.logical_and(fingerprints[first], fingerprints[second]).sum()
            either = np.logical_or(fingerprints[first], fingerprints[second]).sum()
            jaccard[first, second] = both / either if either else 0.0
    np.fill_diagonal(jaccard, 0.0)
    jaccard[:, matrix.sum(axis=1) == 0] = 0.0

    knn = FeatureKNN(n_neighbors=9, metric="tanimoto", fallback="zeros")
    scores = knn.fit(pairs, 10, 6, row_features=fingerprints).score_rows(np.arange(10))

    np.testing.assert_allclose(scores.numpy(), jaccard @ matrix, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["row_knn", "column_knn", "ease"])
def test_row_without_positives_gets_fallback(name: str) -> None:
    pairs = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 1]])  # row 3 has no positives

    popular = make_baseline(name).fit(pairs, 4, 3).score_rows(np.array([3]))
    zeros = make_baseline(name, fallback="zeros").fit(pairs, 4, 3).score_rows(np.array([3]))

    np.testing.assert_array_equal(popular.numpy(), [[1.0, 3.0, 1.0]])
    np.testing.assert_array_equal(zeros.numpy(), [[0.0, 0.0, 0.0]])


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_batch_scores_equal_row_by_row(name: str) -> None:
    pairs = random_pairs(12, 9, density=0.3, seed=5)
    features = np.random.default_rng(5).random((12, 4)).astype(np.float32)
    baseline = make_baseline(name).fit(pairs, 12, 9, row_features=features)
    rows = np.array([3, 0, 11, 3, 7])

    batch = baseline.score_rows(rows)
    single = torch.cat([baseline.score_rows(torch.tensor([row])) for row in rows])

    assert batch.shape == (5, 9)
    assert batch.dtype == torch.float32
    torch.testing.assert_close(batch, single)


def test_make_baseline_builds_each_registered_name() -> None:
    for name, baseline_class in BASELINES.items():
        baseline = make_baseline(name)
        assert isinstance(baseline, baseline_class)
        assert baseline.name == name


def test_make_baseline_unknown_name() -> None:
    message = (
        r"Unknown baseline name 'bpr'. Valid names: column_knn, ease, feature_knn, feature_ridge, popularity, row_knn"
    )
    with pytest.raises(ValueError, match=message):
        make_baseline("bpr")


PAIRS = np.array([[0, 0], [1, 1]])


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: RowKNN(n_neighbors=0), ValueError, r"n_neighbors must be an integer >= 1, got 0"),
        (lambda: ColumnKNN(n_neighbors=1.5), TypeError, r"n_neighbors must be an integer >= 1, got 1.5"),
        (lambda: EASE(l2=0.0), ValueError, r"l2 must be a finite number > 0, got 0.0"),
        (lambda: EASE(l2="big"), TypeError, r"l2 must be a real number > 0, got 'big'"),
        (
            lambda: FeatureKNN(metric="jaccard"),
            ValueError,
            r"metric must be one of 'cosine', 'tanimoto', got 'jaccard'",
        ),
        (
            lambda: RowKNN(fallback="mean"),
            ValueError,
            r"fallback must be one of 'popularity', 'zeros', got 'mean'",
        ),
        (
            lambda: Popularity().fit(np.array([0, 1]), 2, 2),
            ValueError,
            r"train_pairs must be 2-D, got shape \(2,\)",
        ),
        (
            lambda: Popularity().fit(np.zeros((2, 3), dtype=np.int64), 2, 2),
            ValueError,
            r"train_pairs must have shape \(P, 2\) .* got shape \(2, 3\)",
        ),
        (
            lambda: Popularity().fit(PAIRS.astype(float), 2, 2),
            TypeError,
            r"train_pairs must contain integer indices",
        ),
        (
            lambda: Popularity().fit(np.array([[0, 0], [2, 1]]), 2, 2),
            ValueError,
            r"train_pairs\[1\] = \[2, 1\] has a row index outside \[0, n_rows\) = \[0, 2\)",
        ),
        (
            lambda: Popularity().fit(np.array([[0, -1]]), 2, 2),
            ValueError,
            r"train_pairs\[0\] = \[0, -1\] has a column index outside \[0, n_cols\) = \[0, 2\)",
        ),
        (lambda: Popularity().fit(PAIRS, 0, 2), ValueError, r"n_rows must be an integer >= 1, got 0"),
        (
            lambda: Popularity().score_rows(np.array([0])),
            RuntimeError,
            r"Popularity is not fitted. Call fit\(train_pairs, n_rows, n_cols\) first.",
        ),
        (
            lambda: Popularity().fit(PAIRS, 2, 2).score_rows(np.array([0, 2])),
            ValueError,
            r"rows contains 2, outside the fitted range \[0, 2\)",
        ),
        (
            lambda: FeatureKNN().fit(PAIRS, 2, 2),
            ValueError,
            r"row_features is missing: FeatureKNN needs an \(n_rows, F\) array",
        ),
        (
            lambda: FeatureKNN().fit(PAIRS, 2, 2, row_features=np.ones((3, 4))),
            ValueError,
            r"row_features must have shape \(n_rows=2, F\), got \(3, 4\)",
        ),
        (
            lambda: FeatureKNN().fit(PAIRS, 2, 2, row_features=np.full((2, 4), np.nan)),
            ValueError,
            r"row_features contains NaN or infinite values",
        ),
    ],
)
def test_invalid_input_raises(build, error, message) -> None:
    with pytest.raises(error, match=message):
        build()

"""Synthetic implicit-feedback matrices for benchmarks and tests.

Real interaction data is skewed: a few rows (users, drugs) and columns (items, ADRs) hold
most of the positives. ``powerlaw_pairs`` draws positives whose row and column popularity
follow Zipf-like laws, and ``uniform_pairs`` draws them uniformly for comparison.
"""

from __future__ import annotations

import numpy as np


def uniform_pairs(n_rows: int, n_cols: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n_pairs`` uniform ``(row, column)`` pairs; duplicates are left for ``PositiveSet`` to drop.

    Example:
        >>> uniform_pairs(10, 5, 3, np.random.default_rng(0)).shape
        (3, 2)
    """
    return np.stack([rng.integers(0, n_rows, n_pairs), rng.integers(0, n_cols, n_pairs)], axis=1)  # (n_pairs, 2)


def powerlaw_pairs(
    n_rows: int,
    n_cols: int,
    n_pairs: int,
    rng: np.random.Generator,
    row_exponent: float = 0.8,
    col_exponent: float = 0.9,
    max_row_share: float = 1e-3,
) -> np.ndarray:
    """Draw exactly ``n_pairs`` unique pairs with Zipf-like row and column popularity.

    Row ``r`` is drawn with weight ``(r + 1) ** -row_exponent`` and column ``c`` with
    weight ``(c + 1) ** -col_exponent``. Each row's probability is capped at
    ``max_row_share`` so that no row comes close to having every column as a positive.
    Pairs are drawn until enough distinct ones exist, then ``n_pairs`` of them are kept.

    Args:
        n_rows: Number of rows.
        n_cols: Number of columns.
        n_pairs: Number of distinct positives to return, at most ``n_rows * n_cols / 2``.
        rng: Source of the draws.
        row_exponent: Zipf exponent of the row popularity.
        col_exponent: Zipf exponent of the column popularity.
        max_row_share: Largest probability of a single row.

    Returns:
        ``(n_pairs, 2)`` int64 ``(row, column)`` pairs in random order.

    Raises:
        ValueError: When ``n_pairs`` exceeds half of the grid, which the rejection of
            duplicates could not reach in reasonable time.

    Example:
        >>> pairs = powerlaw_pairs(100, 50, 400, np.random.default_rng(0))
        >>> pairs.shape, len(np.unique(pairs[:, 0] * 50 + pairs[:, 1]))
        ((400, 2), 400)
    """
    if n_pairs > n_rows * n_cols // 2:
        raise ValueError(
            f"n_pairs must be at most half of the {n_rows} x {n_cols} grid ({n_rows * n_cols // 2}), got {n_pairs}"
        )
    row_probability = np.arange(1, n_rows + 1, dtype=np.float64) ** -row_exponent
    row_probability = np.minimum(row_probability / row_probability.sum(), max_row_share)
    row_probability /= row_probability.sum()
    col_probability = np.arange(1, n_cols + 1, dtype=np.float64) ** -col_exponent
    col_probability /= col_probability.sum()

    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < n_pairs:
        n_draws = int(1.2 * (n_pairs - len(keys))) + 1
        rows = rng.choice(n_rows, size=n_draws, p=row_probability)
        cols = rng.choice(n_cols, size=n_draws, p=col_probability)
        keys = np.union1d(keys, rows.astype(np.int64) * n_cols + cols)
    keys = rng.choice(keys, size=n_pairs, replace=False)
    return np.stack([keys // n_cols, keys % n_cols], axis=1)  # (n_pairs, 2)

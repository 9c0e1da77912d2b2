"""Seeded train/validation splits of an interaction data set.

A split names the training positives, the held-out positives and the rows that are
evaluated. The validation candidates of an evaluated row are all its pairs that are not
training positives; the held-out positives among them are the ones to find.

- ``warm``: a fraction of the known pairs is held out; every row is evaluated.
- ``cold``: a fraction of the rows (drugs) is held out with all their pairs; only those rows
  are evaluated, and the model never sees any of their pairs in training.

``make_folds`` builds the k splits of a cross-validation, and ``inner_split`` carves a
validation split out of the training part of one of them.
"""

from __future__ import annotations

import logging
import dataclasses
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

SPLIT_KINDS = ("warm", "cold")


@dataclass(frozen=True)
class Split:
    """Training and held-out pairs plus the rows to evaluate.

    Attributes:
        train_pairs: ``(P_train, 2)`` int64 training positives.
        val_pairs: ``(P_val, 2)`` int64 held-out positives; empty when nothing is held out.
        val_rows: ``(R_val,)`` int64 rows whose candidates are evaluated.
        kind: ``"warm"`` or ``"cold"``.
        excluded_rows: ``(R_excluded,)`` int64 rows that training must not see besides the
            held-out rows of a cold split, for example the test rows of an outer
            cross-validation fold while an inner split picks the epoch. They are never
            evaluated.
    """

    train_pairs: np.ndarray
    val_pairs: np.ndarray
    val_rows: np.ndarray
    kind: str = "warm"
    excluded_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @property
    def has_validation(self) -> bool:
        """Whether any positive is held out for validation."""
        return len(self.val_pairs) > 0

    @property
    def cold_rows(self) -> np.ndarray:
        """``(R_cold,)`` sorted rows that training must not see at all: the held-out rows
        of a cold split and the excluded rows."""
        held_out = self.val_rows if self.kind == "cold" else np.empty(0, dtype=np.int64)
        return np.union1d(held_out, self.excluded_rows).astype(np.int64)

    def train_rows(self, n_rows: int) -> np.ndarray:
        """Return the ``(R_train,)`` rows that training may use: all rows but the cold ones."""
        return np.setdiff1d(np.arange(n_rows, dtype=np.int64), self.cold_rows)


def make_split(
    pairs: np.ndarray, n_rows: int, kind: str = "warm", val_fraction: float = 0.1, seed: int = 0
) -> Split:
    """Split positive pairs into training and validation parts.

    Args:
        pairs: ``(P, 2)`` int64 unique positive pairs.
        n_rows: Number of rows of the matrix.
        kind: ``"warm"`` holds out pairs, ``"cold"`` holds out whole rows.
        val_fraction: Fraction of pairs (warm) or of rows with positives (cold) to hold out,
            in ``[0, 1)``. Zero trains on every pair and evaluates nothing.
        seed: Seed of the permutation; the same seed gives the same split.

    Returns:
        The split.

    Raises:
        ValueError: When ``kind`` or ``val_fraction`` is invalid.

    Example:
        >>> pairs = np.array([[r, c] for r in range(4) for c in range(5)])
        >>> split = make_split(pairs, n_rows=4, kind="warm", val_fraction=0.25, seed=0)
        >>> len(split.train_pairs), len(split.val_pairs), split.val_rows.tolist()
        (15, 5, [0, 1, 2, 3])
        >>> cold = make_split(pairs, n_rows=4, kind="cold", val_fraction=0.25, seed=0)
        >>> len(cold.val_rows), len(cold.val_pairs)
        (1, 5)
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"split kind must be one of {SPLIT_KINDS}, got {kind!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    pairs = np.asarray(pairs, dtype=np.int64)
    generator = np.random.default_rng(seed)
    if val_fraction == 0.0:
        empty = np.empty((0, 2), dtype=np.int64)
        return Split(pairs, empty, np.empty(0, dtype=np.int64), kind)

    if kind == "warm":
        n_val = int(round(val_fraction * len(pairs)))
        held_out = np.zeros(len(pairs), dtype=bool)
        held_out[generator.permutation(len(pairs))[:n_val]] = True
        split = Split(pairs[~held_out], pairs[held_out], np.arange(n_rows, dtype=np.int64), kind)
    else:
        rows_with_pairs = np.unique(pairs[:, 0])
        n_val = max(1, int(round(val_fraction * len(rows_with_pairs))))
        val_rows = np.sort(generator.permutation(rows_with_pairs)[:n_val])
        held_out = np.isin(pairs[:, 0], val_rows)
        split = Split(pairs[~held_out], pairs[held_out], val_rows, kind)
    logger.info(
        "%s split (seed %d): %d training pairs, %d validation pairs, %d evaluated rows",
        kind,
        seed,
        len(split.train_pairs),
        len(split.val_pairs),
        len(split.val_rows),
    )
    return split


def make_folds(pairs: np.ndarray, n_rows: int, kind: str = "warm", n_folds: int = 5, seed: int = 0) -> list[Split]:
    """Split positive pairs into the ``n_folds`` splits of a k-fold cross-validation.

    Repeated pairs are removed first. ``warm`` shuffles the unique pairs and cuts them into
    ``n_folds`` parts whose sizes differ by at most one. Fold ``i`` holds out part ``i``
    and evaluates every row. ``cold`` cuts all ``n_rows`` rows the same way, rows without
    pairs included. Fold ``i`` holds out the rows of part ``i`` with all their pairs and
    evaluates only them. Either way the held-out parts are disjoint and together cover
    every pair (and, for ``cold``, every row).

    Args:
        pairs: ``(P, 2)`` int64 positive pairs. Duplicates are allowed and removed.
        n_rows: Number of rows of the matrix.
        kind: ``"warm"`` holds out pairs, ``"cold"`` holds out whole rows.
        n_folds: Number of folds, at least 2 and at most the number of unique pairs
            (warm) or rows (cold).
        seed: Seed of the shuffle. The same seed gives the same folds.

    Returns:
        One split per fold, in fold order.

    Raises:
        ValueError: When ``kind`` is invalid, ``pairs`` is not ``(P, 2)``, or ``n_folds``
            is out of range.

    Example:
        >>> pairs = np.array([[r, c] for r in range(4) for c in range(5)])
        >>> folds = make_folds(pairs, n_rows=4, kind="warm", n_folds=4, seed=0)
        >>> [len(fold.val_pairs) for fold in folds], len(folds[0].train_pairs)
        ([5, 5, 5, 5], 15)
        >>> [fold.val_rows.tolist() for fold in make_folds(pairs, 4, "cold", n_folds=2)]
        [[0, 2], [1, 3]]
    """
    if kind not in SPLIT_KINDS:
        raise ValueError(f"split kind must be one of {SPLIT_KINDS}, got {kind!r}")
    pairs = np.asarray(pairs, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must have shape (P, 2), got {pairs.shape}")
    unique_pairs = np.unique(pairs, axis=0)  # (P_unique, 2), sorted by row then column
    if len(unique_pairs) < len(pairs):
        logger.info("removed %d repeated pair(s) before folding", len(pairs) - len(unique_pairs))
    n_items = len(unique_pairs) if kind == "warm" else n_rows
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= n_items:
        unit = "unique pairs" if kind == "warm" else "rows"
        raise ValueError(f"n_folds must be an integer from 2 to the number of {unit} ({n_items}), got {n_folds!r}")

    parts = np.array_split(np.random.default_rng(seed).permutation(n_items), n_folds)
    folds = []
    for part in parts:
        if kind == "warm":
            held_out = np.zeros(len(unique_pairs), dtype=bool)
            held_out[part] = True
            val_rows = np.arange(n_rows, dtype=np.int64)
        else:
            val_rows = np.sort(part).astype(np.int64)
            held_out = np.isin(unique_pairs[:, 0], val_rows)
        folds.append(Split(unique_pairs[~held_out], unique_pairs[held_out], val_rows, kind))
    logger.info(
        "%d %s folds (seed %d) of %d unique pairs: %s held-out pairs",
        n_folds,
        kind,
        seed,
        len(unique_pairs),
        "/".join(str(len(fold.val_pairs)) for fold in folds),
    )
    return folds


def inner_split(split: Split, n_rows: int, val_fraction: float, seed: int = 0) -> Split:
    """Carve a validation split of the same kind out of the training part of ``split``.

    The held-out positives of ``split`` (a test fold) appear nowhere in the result: the
    inner training and validation pairs together are exactly ``split.train_pairs``, and
    the rows that training must not see (``cold_rows``) stay excluded from inner training.

    Args:
        split: The outer split, usually a fold of :func:`make_folds`.
        n_rows: Number of rows of the matrix.
        val_fraction: Fraction of the training pairs (warm) or training rows with pairs
            (cold) to hold out, in ``[0, 1)``. Zero holds out nothing.
        seed: Seed of the inner permutation.

    Returns:
        The inner split, with ``excluded_rows`` set to the outer split's ``cold_rows``.

    Raises:
        ValueError: As :func:`make_split`.

    Example:
        >>> pairs = np.array([[r, c] for r in range(4) for c in range(5)])
        >>> outer = make_folds(pairs, n_rows=4, kind="cold", n_folds=2)[0]
        >>> inner = inner_split(outer, n_rows=4, val_fraction=0.5)
        >>> inner.val_rows.tolist(), inner.train_rows(4).tolist()
        ([1], [3])
    """
    inner = make_split(split.train_pairs, n_rows, split.kind, val_fraction, seed)
    return dataclasses.replace(inner, excluded_rows=split.cold_rows)

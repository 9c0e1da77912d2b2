"""Seeded train/validation splits of an interaction data set.

A split names the training positives, the held-out positives and the rows that are
evaluated. The validation candidates of an evaluated row are all its pairs that are not
training positives; the held-out positives among them are the ones to find.

- ``warm``: a fraction of the known pairs is held out; every row is evaluated.
- ``cold``: a fraction of the rows (drugs) is held out with all their pairs; only those rows
  are evaluated, and the model never sees any of their pairs in training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
    """

    train_pairs: np.ndarray
    val_pairs: np.ndarray
    val_rows: np.ndarray
    kind: str = "warm"

    @property
    def has_validation(self) -> bool:
        """Whether any positive is held out for validation."""
        return len(self.val_pairs) > 0

    @property
    def cold_rows(self) -> np.ndarray:
        """``(R_cold,)`` held-out rows of a cold split, which training must not see at all."""
        return self.val_rows if self.kind == "cold" else np.empty(0, dtype=np.int64)

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

"""Sparse storage of positive pairs and vectorized look-ups over it.

Memory grows with the number of positives, never with rows × columns.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


class PositiveSet:
    """Positive pairs in compressed sparse row (CSR) form, with a vectorized membership test.

    Args:
        pairs: ``(P, 2)`` int64 array of ``(row, column)`` indices; duplicates are dropped.
        n_rows: Number of rows of the matrix.
        n_cols: Number of columns of the matrix.

    Raises:
        ValueError: When ``pairs`` is not ``(P, 2)`` or an index is out of range.

    Example:
        >>> positives = PositiveSet(np.array([[0, 1], [2, 0], [0, 3]]), n_rows=3, n_cols=4)
        >>> positives.indptr.tolist(), positives.indices.tolist()
        ([0, 2, 2, 3], [1, 3, 0])
        >>> positives.contains(torch.tensor([0, 0, 2]), torch.tensor([1, 2, 0])).tolist()
        [True, False, True]
        >>> positives.dense_rows(torch.tensor([2, 0])).int().tolist()
        [[1, 0, 0, 0], [0, 1, 0, 1]]
    """

    def __init__(self, pairs: np.ndarray, n_rows: int, n_cols: int) -> None:
        pairs = np.asarray(pairs, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ValueError(f"pairs must have shape (P, 2), got {pairs.shape}")
        for axis, limit, side in ((0, n_rows, "row"), (1, n_cols, "column")):
            if len(pairs) and (pairs[:, axis].min() < 0 or pairs[:, axis].max() >= limit):
                raise ValueError(
                    f"{side} indices must lie in [0, {limit}), got the range "
                    f"[{pairs[:, axis].min()}, {pairs[:, axis].max()}]"
                )
        self.n_rows = int(n_rows)
        self.n_cols = int(n_cols)
        keys = np.unique(pairs[:, 0] * self.n_cols + pairs[:, 1])  # (P,) sorted row-major
        self.keys = torch.from_numpy(keys)
        rows = keys // self.n_cols
        self.indices = torch.from_numpy(keys % self.n_cols)  # (P,) column of each positive
        counts = np.bincount(rows, minlength=self.n_rows)  # (R,)
        self.indptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def row_counts(self) -> Tensor:
        """``(R,)`` int64 number of positives of each row."""
        return self.indptr[1:] - self.indptr[:-1]

    @property
    def col_counts(self) -> Tensor:
        """``(C,)`` int64 number of positives of each column."""
        return torch.bincount(self.indices, minlength=self.n_cols)

    def pairs(self) -> Tensor:
        """Return the ``(P, 2)`` int64 ``(row, column)`` pairs, sorted row-major."""
        return torch.stack([self.keys // self.n_cols, self.indices], dim=1)  # (P, 2)

    def dense_rows(self, rows: Tensor) -> Tensor:
        """Return the positives of some rows as a dense boolean matrix.

        Args:
            rows: ``(N,)`` int64 row indices.

        Returns:
            ``(N, C)`` bool, true at the positives of each requested row.
        """
        rows = rows.to(torch.int64)
        starts, counts = self.indptr[rows], self.row_counts[rows]  # (N,), (N,)
        owner = torch.repeat_interleave(torch.arange(len(rows)), counts)  # (nnz,)
        first_of_owner = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)  # (nnz,)
        offset = torch.arange(len(owner)) - first_of_owner  # (nnz,) position within the row
        dense = torch.zeros(len(rows), self.n_cols, dtype=torch.bool)  # (N, C)
        dense[owner, self.indices[starts[owner] + offset]] = True
        return dense

    def contains(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Test which ``(row, column)`` pairs are positives.

        Args:
            rows: ``(B,)`` int64 row indices.
            cols: ``(B,)`` int64 column indices.

        Returns:
            ``(B,)`` bool, true where the pair is a positive.
        """
        if len(self.keys) == 0:
            return torch.zeros(rows.shape, dtype=torch.bool)
        query = rows.to(torch.int64) * self.n_cols + cols.to(torch.int64)  # (B,)
        position = torch.searchsorted(self.keys, query).clamp_(max=len(self.keys) - 1)  # (B,)
        return self.keys[position] == query

"""The interaction data set: row entities, column entities and their known positive pairs.

Rows are drugs (or users) and columns are adverse drug reactions (or items). Only positive
pairs are stored; every other pair is unknown, not negative. Entity tables keep the external
id of each entity and its name, and the row order of a table defines the contiguous index
used by the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hybridmf.data.errors import DataFormatError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class InteractionData:
    """Row and column entity tables plus the known positive pairs between them.

    Attributes:
        rows: One line per row entity, with at least the columns ``id`` and ``name``.
            The position of a line is the entity's index.
        cols: One line per column entity, with at least ``id`` and ``name``.
        pairs: ``(P, 2)`` int64 array of ``(row index, column index)``, sorted and unique.
        name: A short label of the data set, used in logs and reports.
        row_features: Optional feature tables of the row entities, keyed by source name;
            each is a data frame indexed by entity id.
        col_features: The same for column entities.
        weights: Optional ``(P,)`` float32 confidence of each pair, aligned with ``pairs``.
            None when every pair counts the same. In training, a pair of weight ``w``
            weighs ``pos_weight * w`` in the BCE loss, and its triplets weigh ``w``.

    Example:
        >>> data = InteractionData.from_frames(
        ...     rows=pd.DataFrame({"id": ["d1", "d2"], "name": ["aspirin", "ibuprofen"]}),
        ...     cols=pd.DataFrame({"id": ["a1", "a2", "a3"], "name": ["rash", "nausea", "pain"]}),
        ...     pairs=pd.DataFrame({"row_id": ["d1", "d2", "d2"], "col_id": ["a1", "a1", "a3"]}),
        ... )
        >>> data.n_rows, data.n_cols, data.n_pairs
        (2, 3, 3)
        >>> data.pairs.tolist()
        [[0, 0], [1, 0], [1, 2]]
    """

    rows: pd.DataFrame
    cols: pd.DataFrame
    pairs: np.ndarray
    name: str = "interactions"
    row_features: dict[str, pd.DataFrame] = field(default_factory=dict)
    col_features: dict[str, pd.DataFrame] = field(default_factory=dict)
    weights: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        """Number of row entities."""
        return len(self.rows)

    @property
    def n_cols(self) -> int:
        """Number of column entities."""
        return len(self.cols)

    @property
    def n_pairs(self) -> int:
        """Number of known positive pairs."""
        return len(self.pairs)

    @property
    def row_ids(self) -> pd.Index:
        """External ids of the rows, in index order."""
        return pd.Index(self.rows["id"])

    @property
    def col_ids(self) -> pd.Index:
        """External ids of the columns, in index order."""
        return pd.Index(self.cols["id"])

    @classmethod
    def from_frames(
        cls,
        rows: pd.DataFrame,
        cols: pd.DataFrame,
        pairs: pd.DataFrame,
        name: str = "interactions",
        source: str | None = None,
        line_numbers: np.ndarray | None = None,
        drop_duplicates: bool = False,
        row_label: str = "row",
        col_label: str = "column",
        row_source: str | None = None,
        col_source: str | None = None,
    ) -> InteractionData:
        """Build the data set from entity tables and a table of pairs keyed by entity id.

        Ids are mapped to indices with one vectorized look-up per side.

        Args:
            rows: Row entities with columns ``id`` and ``name`` (more columns are kept). An
                optional ``line`` column gives file line numbers for messages and is dropped.
            cols: Column entities with columns ``id`` and ``name`` (and optional ``line``).
            pairs: Pairs with columns ``row_id`` and ``col_id``.
            name: Label of the data set.
            source: File the pairs came from, named in error messages.
            line_numbers: File line number of each pair, for messages; the 1-based position
                in ``pairs`` when None.
            drop_duplicates: Remove repeated pairs with a logged count instead of raising.
            row_label: What a row is called in messages, e.g. ``"drug"``.
            col_label: What a column is called in messages, e.g. ``"ADR"``.
            row_source: File the row table came from, for messages.
            col_source: File the column table came from, for messages.

        Returns:
            The validated data set.

        Raises:
            DataFormatError: When an entity id repeats, a pair names an unknown id, or a pair
                repeats and ``drop_duplicates`` is false.
        """
        source = source or "pairs"
        if line_numbers is None:
            line_numbers = np.arange(1, len(pairs) + 1)
        rows = _check_entities(rows, f"{row_label} table", row_source or f"the {row_label} table")
        cols = _check_entities(cols, f"{col_label} table", col_source or f"the {col_label} table")
        row_index = pd.Index(rows["id"]).get_indexer(pairs["row_id"].astype(str))
        col_index = pd.Index(cols["id"]).get_indexer(pairs["col_id"].astype(str))
        sides = ((row_label, row_index, "row_id", row_source), (col_label, col_index, "col_id", col_source))
        for label, index, column, table_source in sides:
            unknown = np.flatnonzero(index < 0)
            if len(unknown) > 0:
                first = unknown[0]
                raise DataFormatError(
                    f"{source}, line {line_numbers[first]}: unknown {label} id "
                    f"{pairs[column].iloc[first]!r}, not listed in {table_source or f'the {label} table'}"
                    f" ({len(unknown)} pair(s) with unknown {label} ids)"
                )

        return cls._from_checked_indices(
            rows,
            cols,
            row_index,
            col_index,
            weights=None,
            name=name,
            source=source,
            line_numbers=line_numbers,
            drop_duplicates=drop_duplicates,
            row_label=row_label,
            col_label=col_label,
        )

    @classmethod
    def from_indices(
        cls,
        rows: pd.DataFrame,
        cols: pd.DataFrame,
        row_index: np.ndarray,
        col_index: np.ndarray,
        weights: np.ndarray | None = None,
        name: str = "interactions",
        source: str | None = None,
        line_numbers: np.ndarray | None = None,
        drop_duplicates: bool = False,
        row_label: str = "row",
        col_label: str = "column",
        row_source: str | None = None,
        col_source: str | None = None,
    ) -> InteractionData:
        """Build the data set from entity tables and pairs already mapped to entity indices.

        This is the path for large files: the readers map ids to indices chunk by chunk, so
        no id string per pair is kept. Repeated pairs are merged, and their weights are
        merged by the maximum: a repeated line is the same evidence reported again, so
        summing would count it twice and change the scale of the weights.

        Args:
            rows: Row entities with columns ``id`` and ``name`` (and optional ``line``).
            cols: Column entities with columns ``id`` and ``name`` (and optional ``line``).
            row_index: ``(P,)`` integer row index of each pair.
            col_index: ``(P,)`` integer column index of each pair.
            weights: Optional ``(P,)`` positive finite confidence of each pair.
            name: Label of the data set.
            source: File the pairs came from, named in error messages.
            line_numbers: File line number of each pair, for messages; the 1-based position
                when None.
            drop_duplicates: Merge repeated pairs with a logged count instead of raising.
            row_label: What a row is called in messages.
            col_label: What a column is called in messages.
            row_source: File the row table came from, for messages.
            col_source: File the column table came from, for messages.

        Returns:
            The validated data set, with ``weights`` sorted like ``pairs``.

        Raises:
            DataFormatError: When an entity id repeats, or a pair repeats and
                ``drop_duplicates`` is false.
            ValueError: When the index arrays differ in length or hold an index out of
                range, or ``weights`` has the wrong length or a value that is not finite
                and positive.

        Example:
            >>> data = InteractionData.from_indices(
            ...     rows=pd.DataFrame({"id": ["d1", "d2"], "name": ["aspirin", "ibuprofen"]}),
            ...     cols=pd.DataFrame({"id": ["a1", "a2"], "name": ["rash", "nausea"]}),
            ...     row_index=np.array([1, 0, 1]),
            ...     col_index=np.array([0, 1, 0]),
            ...     weights=np.array([2.0, 1.0, 5.0]),
            ...     drop_duplicates=True,
            ... )
            >>> data.pairs.tolist(), data.weights.tolist()
            ([[0, 1], [1, 0]], [1.0, 5.0])
        """
        rows = _check_entities(rows, f"{row_label} table", row_source or f"the {row_label} table")
        cols = _check_entities(cols, f"{col_label} table", col_source or f"the {col_label} table")
        row_index = np.asarray(row_index)
        col_index = np.asarray(col_index)
        if row_index.shape != col_index.shape or row_index.ndim != 1:
            raise ValueError(
                f"row_index and col_index must be 1-D arrays of the same length, got shapes "
                f"{row_index.shape} and {col_index.shape}"
            )
        for argument, index, size in (("row_index", row_index, len(rows)), ("col_index", col_index, len(cols))):
            if len(index) > 0 and (index.min() < 0 or index.max() >= size):
                raise ValueError(
                    f"{argument} must lie in [0, {size - 1}], got values from {index.min()} to "
                    f"{index.max()}"
                )
        if weights is not None:
            weights = check_pair_weights(weights, len(row_index))
        return cls._from_checked_indices(
            rows,
            cols,
            row_index,
            col_index,
            weights=weights,
            name=name,
            source=source or "pairs",
            line_numbers=line_numbers,
            drop_duplicates=drop_duplicates,
            row_label=row_label,
            col_label=col_label,
        )

    @classmethod
    def _from_checked_indices(
        cls,
        rows: pd.DataFrame,
        cols: pd.DataFrame,
        row_index: np.ndarray,
        col_index: np.ndarray,
        weights: np.ndarray | None,
        name: str,
        source: str,
        line_numbers: np.ndarray | None,
        drop_duplicates: bool,
        row_label: str,
        col_label: str,
    ) -> InteractionData:
        """Sort the pairs, merge or reject repeats, and build the data set.

        Memory is a few int64 arrays of length P; no dense rows × columns grid is built.
        """
        n_cols = len(cols)
        keys = row_index.astype(np.int64) * n_cols + col_index  # (P,) a new array, sorted in place
        if weights is None:
            keys.sort()
        else:
            order = np.argsort(keys, kind="stable")  # (P,) stable, so repeats keep file order
            keys = keys[order]  # (P,)
            weights = weights[order]  # (P,)
            del order
        is_first = np.ones(len(keys), dtype=bool)  # (P,) true for the first copy of a pair
        is_first[1:] = keys[1:] != keys[:-1]
        n_repeated = len(keys) - int(np.count_nonzero(is_first))
        if n_repeated > 0:
            if not drop_duplicates:
                first = _first_repeated_position(row_index.astype(np.int64) * n_cols + col_index)
                line = first + 1 if line_numbers is None else line_numbers[first]
                raise DataFormatError(
                    f"{source}, line {line}: duplicate pair "
                    f"({rows['id'].iloc[row_index[first]]!r}, {cols['id'].iloc[col_index[first]]!r}); "
                    f"{n_repeated} repeated pair(s) in total"
                )
            merged = "" if weights is None else ", keeping the maximum weight of each pair"
            logger.warning("%s: dropped %d duplicate pair(s)%s", source, n_repeated, merged)
            if weights is not None:
                weights = np.maximum.reduceat(weights, np.flatnonzero(is_first))  # (unique P,)
            keys = keys[is_first]  # (unique P,) sorted by row, then column
        del is_first
        pairs = np.empty((len(keys), 2), dtype=np.int64)  # (P, 2)
        np.floor_divide(keys, n_cols, out=pairs[:, 0])
        np.remainder(keys, n_cols, out=pairs[:, 1])
        del keys
        data = cls(rows=rows, cols=cols, pairs=pairs, name=name, weights=weights)
        logger.info(
            "%s: %d %ss, %d %ss, %d positive pairs (density %.4f)",
            name,
            data.n_rows,
            row_label,
            data.n_cols,
            col_label,
            data.n_pairs,
            data.n_pairs / max(data.n_rows * data.n_cols, 1),
        )
        return data

    def transpose(self) -> InteractionData:
        """Swap rows and columns: entity tables, pairs and feature tables.

        Row ``j`` of the result is column ``j`` of this data set, so anything built for rows,
        such as a cold-row split or per-row metrics, applies to the columns.

        Returns:
            A new data set named ``"<name>-transposed"`` whose pairs are sorted by the new
            row, then the new column.

        Example:
            >>> data = InteractionData(
            ...     rows=pd.DataFrame({"id": ["d1", "d2"], "name": ["a", "b"]}),
            ...     cols=pd.DataFrame({"id": ["a1", "a2", "a3"], "name": ["x", "y", "z"]}),
            ...     pairs=np.array([[0, 2], [1, 0]]), name="toy")
            >>> flipped = data.transpose()
            >>> flipped.n_rows, flipped.n_cols, flipped.pairs.tolist(), flipped.name
            (3, 2, [[0, 1], [2, 0]], 'toy-transposed')
        """
        swapped = self.pairs[:, ::-1]  # (P, 2), (column, row)
        order = np.lexsort((swapped[:, 1], swapped[:, 0]))
        return InteractionData(
            rows=self.cols,
            cols=self.rows,
            pairs=np.ascontiguousarray(swapped[order]),  # (P, 2)
            name=f"{self.name}-transposed",
            row_features=self.col_features,
            col_features=self.row_features,
            weights=None if self.weights is None else self.weights[order],  # (P,)
        )

    def pair_weights(self, pairs: np.ndarray) -> np.ndarray | None:
        """Look up the confidence weights of some known pairs.

        A split or a cross-validation fold lists its training pairs without weights, so
        the data module looks their weights up here.

        Args:
            pairs: ``(N, 2)`` integer ``(row, column)`` pairs, each one of ``self.pairs``.

        Returns:
            ``(N,)`` float32 weights in the order of ``pairs``, or None when the data set
            has no weights.

        Raises:
            ValueError: When ``pairs`` is not ``(N, 2)`` or contains a pair that is not a
                known pair of the data set.

        Example:
            >>> data = InteractionData(
            ...     rows=pd.DataFrame({"id": ["d1", "d2"], "name": ["a", "b"]}),
            ...     cols=pd.DataFrame({"id": ["a1", "a2"], "name": ["x", "y"]}),
            ...     pairs=np.array([[0, 1], [1, 0]]), weights=np.array([2.0, 0.5], dtype=np.float32))
            >>> data.pair_weights(np.array([[1, 0], [0, 1]])).tolist()
            [0.5, 2.0]
        """
        if self.weights is None:
            return None
        pairs = np.asarray(pairs, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ValueError(f"pairs must have shape (N, 2), got {pairs.shape}")
        known = self.pairs[:, 0] * self.n_cols + self.pairs[:, 1]  # (P,) sorted, because pairs are
        query = pairs[:, 0] * self.n_cols + pairs[:, 1]  # (N,)
        position = np.searchsorted(known, query).clip(max=max(len(known) - 1, 0))  # (N,)
        unknown = np.flatnonzero(known[position] != query) if len(known) > 0 else np.arange(len(query))
        if len(unknown) > 0:
            raise ValueError(
                f"pairs must be known pairs of {self.name}, got ({pairs[unknown[0], 0]}, "
                f"{pairs[unknown[0], 1]}) at position {unknown[0]} ({len(unknown)} unknown pair(s))"
            )
        return self.weights[position]

    def column_counts(self, pairs: np.ndarray | None = None) -> np.ndarray:
        """Count the positives of each column.

        Args:
            pairs: ``(P, 2)`` pairs to count; all known pairs when None.

        Returns:
            ``(n_cols,)`` int64 counts.
        """
        pairs = self.pairs if pairs is None else pairs
        return np.bincount(pairs[:, 1], minlength=self.n_cols).astype(np.int64)


def check_pair_weights(weights: np.ndarray, n_pairs: int) -> np.ndarray:
    """Validate the confidence weights of ``n_pairs`` pairs and return them as float32.

    Args:
        weights: ``(n_pairs,)`` weights, finite numbers greater than 0.
        n_pairs: Number of pairs the weights belong to.

    Returns:
        The ``(n_pairs,)`` float32 weights.

    Raises:
        ValueError: When ``weights`` does not have one value per pair, or has a value
            that is not finite and greater than 0.

    Example:
        >>> check_pair_weights([1, 2.5], n_pairs=2).tolist()
        [1.0, 2.5]
    """
    weights = np.asarray(weights, dtype=np.float32)
    if weights.shape != (n_pairs,):
        raise ValueError(f"weights must have one value per pair, shape ({n_pairs},), got {weights.shape}")
    invalid = np.flatnonzero(~(np.isfinite(weights) & (weights > 0)))
    if len(invalid) > 0:
        raise ValueError(
            f"weights must be finite and positive, got {weights[invalid[0]]} at position "
            f"{invalid[0]} ({len(invalid)} invalid weight(s))"
        )
    return weights


def _first_repeated_position(keys: np.ndarray) -> int:
    """Return the smallest position whose key also occurs at an earlier position."""
    _, first_seen = np.unique(keys, return_index=True)
    repeated = np.ones(len(keys), dtype=bool)  # (P,)
    repeated[first_seen] = False
    return int(np.flatnonzero(repeated)[0])


def _check_entities(table: pd.DataFrame, what: str, source: str) -> pd.DataFrame:
    """Validate an entity table and return it with string ids, no ``line`` column and a fresh index.

    The optional ``line`` column contains file line numbers or location labels such as
    ``"row 3"``.
    """
    missing = [column for column in ("id", "name") if column not in table.columns]
    if missing:
        raise DataFormatError(
            f"{source}: the {what} needs the columns 'id' and 'name'; missing {missing}, "
            f"found {list(table.columns)}"
        )
    table = table.reset_index(drop=True).copy()
    lines = table.pop("line").to_numpy() if "line" in table.columns else np.arange(1, len(table) + 1)
    table["id"] = table["id"].astype(str)
    repeated = table["id"].duplicated()
    if repeated.any():
        first = int(np.flatnonzero(repeated.to_numpy())[0])
        # Readers give a line number, or a label such as "row 3" for a Parquet file.
        location = lines[first] if isinstance(lines[first], str) else f"line {lines[first]}"
        raise DataFormatError(
            f"{source}, {location}: the id {table['id'].iloc[first]!r} appears "
            f"more than once; ids in the {what} must be unique"
        )
    return table

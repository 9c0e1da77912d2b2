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

        pair_index = np.stack([row_index, col_index], axis=1).astype(np.int64)  # (P, 2)
        keys = pair_index[:, 0] * len(cols) + pair_index[:, 1]  # (P,)
        unique_keys, first_seen = np.unique(keys, return_index=True)
        if len(unique_keys) < len(keys):
            repeated = np.setdiff1d(np.arange(len(keys)), first_seen)
            if not drop_duplicates:
                first = repeated[0]
                raise DataFormatError(
                    f"{source}, line {line_numbers[first]}: duplicate pair "
                    f"({pairs['row_id'].iloc[first]!r}, {pairs['col_id'].iloc[first]!r}); "
                    f"{len(repeated)} repeated pair(s) in total"
                )
            logger.warning("%s: dropped %d duplicate pair(s)", source, len(repeated))
        sorted_pairs = np.stack(
            [unique_keys // len(cols), unique_keys % len(cols)], axis=1
        )  # (P, 2), sorted by row then column
        data = cls(rows=rows, cols=cols, pairs=sorted_pairs.astype(np.int64), name=name)
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
        )

    def column_counts(self, pairs: np.ndarray | None = None) -> np.ndarray:
        """Count the positives of each column.

        Args:
            pairs: ``(P, 2)`` pairs to count; all known pairs when None.

        Returns:
            ``(n_cols,)`` int64 counts.
        """
        pairs = self.pairs if pairs is None else pairs
        return np.bincount(pairs[:, 1], minlength=self.n_cols).astype(np.int64)


def _check_entities(table: pd.DataFrame, what: str, source: str) -> pd.DataFrame:
    """Validate an entity table and return it with string ids, no ``line`` column and a fresh index."""
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
        raise DataFormatError(
            f"{source}, line {lines[first]}: the id {table['id'].iloc[first]!r} appears "
            f"more than once; ids in the {what} must be unique"
        )
    return table

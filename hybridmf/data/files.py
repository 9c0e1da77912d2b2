"""Your own data: an interactions file, optional entity tables and optional feature tables.

Every file is CSV (``.csv``), tab-separated text (``.tsv``, ``.tab``, ``.txt``) or Parquet
(``.parquet``, ``.pq``), chosen by the suffix. Text files need a header line, are read as
UTF-8 with or without a byte order mark, and may use Windows line endings. A file in
another encoding (for example Latin-1) is rejected with the number of its first
undecodable line. It is not decoded by guessing, because a wrong guess turns ids into
different strings that then fail to match between files. Parquet files need pyarrow
(``pip install -e ".[parquet]"``).

- The interactions file has one known positive pair per line: a row id column
  (``row_id`` by default) and a column id column (``col_id``), plus an optional column of
  positive confidence weights. Other columns are ignored, and so are blank lines. Repeated
  pairs are merged with a logged count, and their weights are merged by the maximum (see
  ``InteractionData.from_indices``).
- An entity table (rows or columns) has an ``id`` column, an optional ``name`` column
  (the id when absent or empty) and any other columns, which are kept. For drugs, a
  ``smiles`` column lets fingerprints be computed later. Without an entity table, the
  entities are the ids of the interactions file in the order of their first appearance.
- A feature table has an ``id`` column and either numeric columns (dense features) or a
  single column named ``tokens`` whose cells list tokens separated by ``;`` (multi-hot
  features). It is read with ``hybridmf.data.features.read_feature_table`` and stored
  under its path in ``InteractionData.row_features`` or ``col_features``, so every later
  message about it names the file.

Memory grows with the number of pairs, not with rows × columns. The interactions file is
read in chunks, and the id columns of each chunk become categorical codes. pyarrow reads
Parquet files, and text files when it is installed. It dictionary-encodes the ids, so only
the distinct ids of a chunk become Python strings. Without pyarrow, pandas reads text files
and makes a Python string per id of the current chunk, which is freed with the chunk. Ids
are mapped to entity indices with ``pd.Index.get_indexer``. A pair then costs 8 bytes of
indices (plus 4 for a weight) until the pairs are sorted, which takes a few int64 arrays of
length P.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from hybridmf.data.errors import DataFormatError
from hybridmf.data.features import (
    _PARQUET_SUFFIXES,
    _TEXT_DELIMITERS,
    _read_raw_table,
    align_features,
    read_feature_table,
)
from hybridmf.data.interactions import InteractionData, _check_entities

logger = logging.getLogger(__name__)

PARQUET_INSTALL_HINT = 'pip install -e ".[parquet]"'
# A feature table with a column of this name is read as token lists (multi-hot).
TOKENS_COLUMN = "tokens"
# Lines of the interactions file parsed at a time.
DEFAULT_CHUNK_SIZE = 1_000_000
# An INFO progress line is logged every this many pairs read.
PROGRESS_EVERY = 5_000_000
# How many unknown ids or entities without pairs an error or log message lists.
EXAMPLE_COUNT = 5


def load_interaction_files(
    interactions: str | os.PathLike,
    rows: str | os.PathLike | None = None,
    cols: str | os.PathLike | None = None,
    row_id_column: str = "row_id",
    col_id_column: str = "col_id",
    weight_column: str | None = None,
    allow_unknown_ids: bool = False,
    row_feature_files: Sequence[str | os.PathLike] = (),
    col_feature_files: Sequence[str | os.PathLike] = (),
    missing_features: str = "error",
    token_separator: str = ";",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    name: str | None = None,
) -> InteractionData:
    """Load an interaction data set from your own files.

    See the module docstring for the file formats.

    Args:
        interactions: File of known positive pairs.
        rows: Table of row entities (``id``, optional ``name``, ``smiles`` and others).
            When None, the rows are the row ids of ``interactions`` in order of first
            appearance, named by their id.
        cols: Table of column entities, like ``rows``.
        row_id_column: Column of ``interactions`` with the row id.
        col_id_column: Column of ``interactions`` with the column id.
        weight_column: Optional column of ``interactions`` with a finite positive
            confidence per pair that float32 can hold, stored as
            ``InteractionData.weights``. Training multiplies ``pos_weight`` by it.
        allow_unknown_ids: Add ids of ``interactions`` that are missing from ``rows`` or
            ``cols`` as new entities named by their id, with a logged count, instead of
            raising.
        row_feature_files: Feature tables of the rows, keyed by row id.
        col_feature_files: Feature tables of the columns, keyed by column id.
        missing_features: ``"error"`` raises when a feature table lacks some entities.
            ``"zero"`` accepts the table, and the entities without a row get zeros when
            the features are aligned for training (``align_features``).
        token_separator: Separator of the tokens in the ``tokens`` column of a feature table.
        chunk_size: Lines of ``interactions`` parsed at a time.
        name: Label of the data set; the stem of ``interactions`` when None.

    Returns:
        The data set. ``pairs`` is sorted and unique, ``weights`` is set when
        ``weight_column`` is given, and the feature tables are stored under their path.

    Raises:
        DataFormatError: When a file is empty, lacks a required column, is not UTF-8 or
            not rectangular, has an empty id or a repeated entity id, has a weight that is
            missing, non-numeric, infinite or not positive, or names ids that the entity
            tables lack (unless ``allow_unknown_ids``). Also when a feature table is
            malformed or, with ``missing_features="error"``, lacks some entities. The
            message names the file and, where there is one, the line (``row N`` for
            Parquet) and the column.
        FileNotFoundError: When a file does not exist.
        ImportError: When a Parquet file is given and pyarrow is not installed.
        ValueError: When an argument is invalid or a suffix is not supported.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "pairs.csv").write_text("row_id,col_id\\nd1,a2\\nd2,a1\\nd1,a1\\n")
        >>> data = load_interaction_files(folder / "pairs.csv")
        >>> data.rows["id"].tolist(), data.cols["id"].tolist()
        (['d1', 'd2'], ['a2', 'a1'])
        >>> data.pairs.tolist()
        [[0, 0], [0, 1], [1, 1]]
    """
    if row_id_column == col_id_column:
        raise ValueError(
            f"row_id_column and col_id_column must differ, both are {row_id_column!r}"
        )
    if weight_column is not None and weight_column in (row_id_column, col_id_column):
        raise ValueError(
            f"weight_column {weight_column!r} must differ from the id columns "
            f"{row_id_column!r} and {col_id_column!r}"
        )
    if missing_features not in ("error", "zero"):
        raise ValueError(f"missing_features must be 'error' or 'zero', got {missing_features!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of lines, got {chunk_size}")
    interactions = Path(interactions)
    started = time.perf_counter()

    # Small files first, so that their errors come before the long read of the pairs.
    row_table = None if rows is None else _read_entity_table(Path(rows), "row")
    col_table = None if cols is None else _read_entity_table(Path(cols), "column")
    row_features = _read_feature_tables(row_feature_files, "row_feature_files", token_separator)
    col_features = _read_feature_tables(col_feature_files, "col_feature_files", token_separator)

    row_lookup = _IdIndex(row_table, "row", row_id_column, interactions, rows)
    col_lookup = _IdIndex(col_table, "column", col_id_column, interactions, cols)
    row_index, col_index, weights = _read_pairs(
        interactions, row_lookup, col_lookup, weight_column, chunk_size
    )
    read_seconds = time.perf_counter() - started

    row_table = row_lookup.entity_table(allow_unknown_ids)
    col_table = col_lookup.entity_table(allow_unknown_ids)
    started_build = time.perf_counter()
    data = InteractionData.from_indices(
        rows=row_table,
        cols=col_table,
        row_index=row_index,
        col_index=col_index,
        weights=weights,
        name=name or interactions.stem,
        source=str(interactions),
        drop_duplicates=True,
        row_source=None if rows is None else str(rows),
        col_source=None if cols is None else str(cols),
    )
    del row_index, col_index, weights
    logger.info(
        "%s: read all files in %.1f s, sorted and de-duplicated the pairs in %.1f s",
        interactions,
        read_seconds,
        time.perf_counter() - started_build,
    )
    _log_entities_without_pairs(data)

    if missing_features == "error":
        # align_features owns the coverage rule; called here so a gap fails before training.
        for tables, ids in ((row_features, data.row_ids), (col_features, data.col_ids)):
            for source, table in tables.items():
                align_features(table, ids, source=source, missing="error")
    return replace(data, row_features=row_features, col_features=col_features)


# ---------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------


def _file_format(path: Path) -> str | None:
    """Return the field delimiter of a text file, or None for Parquet (checking pyarrow)."""
    suffix = path.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        _require_pyarrow(path)
        return None
    if suffix in _TEXT_DELIMITERS:
        return _TEXT_DELIMITERS[suffix]
    raise ValueError(
        f"{path}: unsupported suffix {suffix!r}, expected one of "
        f"{sorted(_TEXT_DELIMITERS) + list(_PARQUET_SUFFIXES)}"
    )


def _require_pyarrow(path: Path) -> None:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ImportError(
            f"{path}: reading Parquet files needs pyarrow, which is not installed. Install "
            f"the extra with {PARQUET_INSTALL_HINT} (or pip install pyarrow), or convert "
            f"the file to CSV"
        ) from None


def _check_file(path: Path, description: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{description} {str(path)!r} not found")


def _id_strings(values) -> np.ndarray:
    """Return ids as stripped strings in an object array, with "" for a missing id.

    Integral floats become integer strings, so an id column that Parquet stores as float
    (because it has a null) still matches integer ids elsewhere.
    """
    series = pd.Series(values).reset_index(drop=True)
    missing = series.isna().to_numpy()
    present = series[~missing]
    integral = pd.api.types.is_float_dtype(present.dtype) and bool(
        np.all(np.isfinite(present) & (np.floor(present) == present))
    )
    if integral:
        text = present.astype(np.int64).astype(str)
    else:
        text = present.astype(str).str.strip()
    strings = np.full(len(series), "", dtype=object)
    strings[~missing] = text.to_numpy(dtype=object)
    return strings


# ---------------------------------------------------------------------------------------
# Entity and feature tables
# ---------------------------------------------------------------------------------------


def _read_entity_table(path: Path, label: str) -> pd.DataFrame:
    """Read and check an entity table: string ids, names defaulting to ids, unique ids."""
    _check_file(path, f"{label} table")
    _file_format(path)
    table, locations = _read_raw_table(path, None)
    table.columns = [str(column).strip() for column in table.columns]
    if "id" not in table.columns:
        raise DataFormatError(
            f"{path}: the {label} table has no column 'id'; found the columns "
            f"{list(table.columns)}. An entity table needs 'id' and may have 'name', "
            f"'smiles' and other columns"
        )
    ids = _id_strings(table["id"])
    empty = np.flatnonzero(ids == "")
    if len(empty) > 0:
        raise DataFormatError(
            f"{path}, {locations[empty[0]]}: the id is empty ({len(empty)} {label}(s) "
            f"without an id)"
        )
    table["id"] = ids
    if "name" not in table.columns:
        table.insert(1, "name", ids)
    else:
        names = _id_strings(table["name"])
        table["name"] = np.where(names == "", ids, names)
    if "smiles" in table.columns:
        table["smiles"] = _id_strings(table["smiles"])
    table["line"] = locations
    # Repeated ids are rejected now, with their line, before the interactions are read.
    return _check_entities(table, f"{label} table", str(path))


def _read_feature_tables(
    files: Sequence[str | os.PathLike], argument: str, token_separator: str
) -> dict[str, pd.DataFrame]:
    """Read feature tables keyed by their path as given, detecting token tables by column name."""
    if isinstance(files, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a list of paths, got the single path {str(files)!r}")
    tables: dict[str, pd.DataFrame] = {}
    for file in files:
        key = str(file)
        if key in tables:
            raise ValueError(f"{argument} lists {key!r} twice")
        path = Path(file)
        _check_file(path, "feature table")
        _file_format(path)
        columns = _header_columns(path)
        tokens_column = TOKENS_COLUMN if TOKENS_COLUMN in columns else None
        if tokens_column is not None:
            extra = [column for column in columns if column not in ("id", TOKENS_COLUMN)]
            if extra:
                raise DataFormatError(
                    f"{path}: a token table has only the columns 'id' and {TOKENS_COLUMN!r}, "
                    f"found also {extra}. Put dense features in a file of their own"
                )
        tables[key] = read_feature_table(
            path, id_column="id", tokens_column=tokens_column, token_separator=token_separator
        )
        logger.info("%s: %d entities x %d feature columns", key, *tables[key].shape)
    return tables


def _header_columns(path: Path) -> list[str]:
    """Return the column names as ``read_feature_table`` sees them, or [] when unreadable.

    A file whose header cannot be read is passed on to ``read_feature_table``, which raises
    the precise error.
    """
    delimiter = _file_format(path)
    try:
        if delimiter is None:
            import pyarrow.parquet as parquet

            names = parquet.read_schema(path).names
        else:
            names = pd.read_csv(path, sep=delimiter, nrows=0, encoding="utf-8-sig").columns
    except (ValueError, OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return []
    return [str(name) for name in names]


# ---------------------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------------------


class _IdIndex:
    """Map the ids of one side to entity indices, adding ids that the entity table lacks.

    Ids missing from the table (all ids when there is no table) get the next indices in
    the order of their first appearance in the interactions file. The known ids form a
    ``pd.Index``, whose hash table is rebuilt only after a chunk brings new ids.
    """

    def __init__(
        self,
        table: pd.DataFrame | None,
        label: str,
        column: str,
        interactions: Path,
        table_path: str | os.PathLike | None,
    ) -> None:
        self.table = table
        self.label = label
        self.column = column
        self.interactions = interactions
        self.table_path = table_path
        self.index = pd.Index(np.array([] if table is None else table["id"].tolist(), dtype=object), dtype=object)
        self.n_known = len(self.index)
        self.n_new_pairs = 0
        self.first_new_location: str | None = None

    def map(self, codes: np.ndarray, categories: np.ndarray, locate: Callable[[int], str]) -> np.ndarray:
        """Return the entity index of each pair, given its code into ``categories``.

        ``locate`` turns a position in ``codes`` into a file location for messages.
        """
        positions = self.index.get_indexer(categories)  # (n_categories,)
        unseen = positions < 0
        if unseen.any():
            used = np.zeros(len(categories), dtype=bool)  # (n_categories,)
            used[codes] = True
            unseen &= used
        if unseen.any():
            distinct, first_position = np.unique(codes, return_index=True)
            first_seen = np.full(len(categories), len(codes), dtype=np.int64)  # (n_categories,)
            first_seen[distinct] = first_position
            new = np.flatnonzero(unseen)
            new = new[np.argsort(first_seen[new], kind="stable")]
            if self.first_new_location is None and self.table is not None:
                self.first_new_location = locate(int(first_seen[new[0]]))
            # Distinct categories can strip to the same id, so keep each new id once.
            new_ids = pd.unique(categories[new])
            self.index = self.index.append(pd.Index(new_ids, dtype=object))
            positions[new] = self.index.get_indexer(categories[new])
        pair_index = positions[codes]  # (n,)
        self.n_new_pairs += int(np.count_nonzero(pair_index >= self.n_known))
        return pair_index.astype(np.int32 if len(self.index) < 2**31 else np.int64)

    def entity_table(self, allow_unknown_ids: bool) -> pd.DataFrame:
        """Return the entity table, extended by the ids that only the interactions file has."""
        new_ids = self.index[self.n_known :].to_numpy(dtype=object)
        if self.table is None:
            logger.info(
                "%s: took %d %s entities from the id column %r, in order of first appearance, "
                "named by their id",
                self.interactions,
                len(new_ids),
                self.label,
                self.column,
            )
            return pd.DataFrame({"id": new_ids, "name": new_ids})
        if len(new_ids) == 0:
            return self.table
        examples = [str(entity) for entity in new_ids[:EXAMPLE_COUNT]]
        if not allow_unknown_ids:
            raise DataFormatError(
                f"{self.interactions}: {len(new_ids)} {self.label} id(s) of the column "
                f"{self.column!r} are not listed in {self.table_path}, e.g. {examples} (first "
                f"on {self.first_new_location}; {self.n_new_pairs} pair(s) in total). Add them "
                f"to {self.table_path}, or pass allow_unknown_ids=True (--allow-unknown-ids) "
                f"to add them as {self.label}s named by their id"
            )
        logger.warning(
            "%s: added %d %s id(s) that %s does not list, named by their id, e.g. %s "
            "(%d pair(s))",
            self.interactions,
            len(new_ids),
            self.label,
            self.table_path,
            examples,
            self.n_new_pairs,
        )
        added = pd.DataFrame({"id": new_ids, "name": new_ids})
        for column in self.table.columns:
            if column not in added.columns:
                values = self.table[column]
                is_text = pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)
                added[column] = "" if is_text else np.nan
        return pd.concat([self.table, added[self.table.columns]], ignore_index=True)


@dataclass
class _Chunk:
    """Consecutive records of the interactions file, with the ids as categorical codes.

    A code indexes ``*_categories``; -1 marks a null id. ``start`` is the 0-based record
    number of the first record, counting data records only (no header, no blank lines).
    """

    row_codes: np.ndarray
    row_categories: np.ndarray
    col_codes: np.ndarray
    col_categories: np.ndarray
    weights: pd.Series | None
    start: int

    def __len__(self) -> int:
        return len(self.row_codes)


def _read_pairs(
    path: Path, row_lookup: _IdIndex, col_lookup: _IdIndex, weight_column: str | None, chunk_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read the interactions file into ``(P,)`` row and column indices and optional weights."""
    _check_file(path, "interactions file")
    delimiter = _file_format(path)
    columns = [row_lookup.column, col_lookup.column] + ([] if weight_column is None else [weight_column])
    if delimiter is None:
        chunks = _parquet_chunks(path, columns, chunk_size)
    else:
        chunks = _text_chunks(path, delimiter, columns, chunk_size)

    row_parts, col_parts, weight_parts = [], [], []
    n_pairs = 0
    started = time.perf_counter()
    for chunk in chunks:

        def locate(position: int, start: int = chunk.start) -> str:
            return _record_location(path, delimiter is None, start + position)

        _check_ids(chunk, path, row_lookup.column, col_lookup.column, locate)
        if weight_column is not None:
            weight_parts.append(_check_weights(chunk.weights, path, weight_column, locate))
        row_parts.append(row_lookup.map(chunk.row_codes, chunk.row_categories, locate))
        col_parts.append(col_lookup.map(chunk.col_codes, chunk.col_categories, locate))
        previous, n_pairs = n_pairs, n_pairs + len(chunk)
        if n_pairs // PROGRESS_EVERY > previous // PROGRESS_EVERY:
            logger.info(
                "%s: %.0f million pairs read in %.1f s", path, n_pairs / 1e6, time.perf_counter() - started
            )
    if n_pairs == 0:
        raise DataFormatError(
            f"{path}: no interactions below the header line; expected one pair per line with "
            f"the columns {columns}"
        )
    logger.info("%s: %d pairs read in %.1f s", path, n_pairs, time.perf_counter() - started)
    row_index = np.concatenate(row_parts)  # (P,)
    del row_parts
    col_index = np.concatenate(col_parts)  # (P,)
    del col_parts
    weights = None if weight_column is None else np.concatenate(weight_parts)  # (P,)
    return row_index, col_index, weights


def _text_chunks(path: Path, delimiter: str, columns: list[str], chunk_size: int) -> Iterator[_Chunk]:
    """Parse a delimited text file in chunks: with pyarrow when installed, else with pandas."""
    try:
        header = pd.read_csv(path, sep=delimiter, nrows=0, encoding="utf-8-sig").columns
    except pd.errors.EmptyDataError:
        raise DataFormatError(
            f"{path}: the file is empty; expected a header line with the columns {columns}"
        ) from None
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    by_name = {str(name).strip(): str(name) for name in header}
    _check_columns(path, columns, list(by_name))
    names = [by_name[column] for column in columns]
    if _pyarrow_installed():
        yield from _arrow_text_chunks(path, delimiter, names, chunk_size)
    else:
        yield from _pandas_text_chunks(path, delimiter, names, chunk_size)


def _pyarrow_installed() -> bool:
    try:
        import pyarrow.compute  # noqa: F401
        import pyarrow.csv  # noqa: F401
    except ImportError:
        return False
    return True


def _arrow_text_chunks(path: Path, delimiter: str, names: list[str], chunk_size: int) -> Iterator[_Chunk]:
    """Stream a text file with pyarrow's CSV reader, which dictionary-encodes the id columns."""
    import pyarrow
    import pyarrow.csv

    id_type = pyarrow.dictionary(pyarrow.int32(), pyarrow.string())
    column_types = {names[0]: id_type, names[1]: id_type}
    if len(names) == 3:
        # Weights stay text here, so a bad value can be reported with its line.
        column_types[names[2]] = pyarrow.string()
    reader = None
    start = 0
    while True:
        try:
            if reader is None:
                # Opening the reader already parses the first block.
                reader = pyarrow.csv.open_csv(
                    path,
                    # Blocks of about 24 bytes per line hold roughly chunk_size lines of two short ids.
                    read_options=pyarrow.csv.ReadOptions(block_size=max(chunk_size * 24, 1 << 16)),
                    parse_options=pyarrow.csv.ParseOptions(delimiter=delimiter),
                    convert_options=pyarrow.csv.ConvertOptions(include_columns=names, column_types=column_types),
                )
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pyarrow.ArrowInvalid as error:
            if "UTF8" in str(error):
                raise _not_utf8(path) from None
            raise DataFormatError(f"{path}: not a rectangular table ({error})") from None
        if batch.num_rows == 0:
            continue
        yield _arrow_chunk(batch, len(names) == 3, start)
        start += batch.num_rows


def _pandas_text_chunks(path: Path, delimiter: str, names: list[str], chunk_size: int) -> Iterator[_Chunk]:
    """Parse a text file with pandas in chunks and factorize the id columns of each chunk.

    Unlike the pyarrow reader, pandas makes a Python string per id of the current chunk;
    they are freed with the chunk.
    """
    # Every column is parsed, because with usecols pandas ignores surplus fields silently.
    reader = pd.read_csv(
        path,
        sep=delimiter,
        dtype={names[0]: object, names[1]: object},
        keep_default_na=False,
        index_col=False,
        encoding="utf-8-sig",
        chunksize=chunk_size,
        low_memory=False,
    )
    start = 0
    with reader, warnings.catch_warnings():
        # pandas only warns, and drops data, when a line has more fields than the header.
        warnings.simplefilter("error", pd.errors.ParserWarning)
        while True:
            try:
                frame = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise _not_utf8(path) from None
            except (pd.errors.ParserError, pd.errors.ParserWarning) as error:
                raise DataFormatError(f"{path}: not a rectangular table ({error})") from None
            row_codes, row_categories = pd.factorize(frame[names[0]].to_numpy(dtype=object))
            col_codes, col_categories = pd.factorize(frame[names[1]].to_numpy(dtype=object))
            yield _Chunk(
                row_codes.astype(np.int64),
                _id_strings(row_categories),
                col_codes.astype(np.int64),
                _id_strings(col_categories),
                None if len(names) < 3 else frame[names[2]].reset_index(drop=True),
                start,
            )
            start += len(frame)


def _parquet_chunks(path: Path, columns: list[str], chunk_size: int) -> Iterator[_Chunk]:
    """Read a Parquet file in record batches; the id columns are dictionary-encoded by pyarrow."""
    import pyarrow
    import pyarrow.parquet as parquet

    try:
        handle = parquet.ParquetFile(path)
    except (pyarrow.ArrowInvalid, OSError) as error:
        raise DataFormatError(f"{path}: not a readable Parquet file ({error})") from None
    _check_columns(path, columns, handle.schema_arrow.names)
    if handle.metadata.num_rows == 0:
        raise DataFormatError(f"{path}: the table has no rows; expected one pair per row")
    start = 0
    with handle:
        for batch in handle.iter_batches(batch_size=chunk_size, columns=columns):
            yield _arrow_chunk(batch, len(columns) == 3, start)
            start += batch.num_rows


def _arrow_chunk(batch, has_weights: bool, start: int) -> _Chunk:
    """Build a chunk from an Arrow record batch of the columns row id, column id (, weight)."""
    row_codes, row_categories = _arrow_codes(batch.column(0))
    col_codes, col_categories = _arrow_codes(batch.column(1))
    weights = _arrow_weights(batch.column(2)) if has_weights else None
    return _Chunk(row_codes, row_categories, col_codes, col_categories, weights, start)


def _arrow_codes(array) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(codes, categories)`` of an Arrow array, with code -1 for a null."""
    import pyarrow
    import pyarrow.compute as compute

    if not pyarrow.types.is_dictionary(array.type):
        array = compute.dictionary_encode(array)
    codes = compute.fill_null(array.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    dictionary = array.dictionary
    if pyarrow.types.is_string(dictionary.type) or pyarrow.types.is_large_string(dictionary.type):
        # Arrow trims the ids and converts them to Python strings, skipping the pandas string dtype.
        trimmed = compute.fill_null(compute.utf8_trim_whitespace(dictionary), "")
        return codes, trimmed.to_numpy(zero_copy_only=False).astype(object)
    return codes, _id_strings(dictionary.to_pandas())


def _arrow_weights(array) -> pd.Series:
    """Convert an Arrow weight column to float64, or to Python values when that fails.

    The fallback keeps the raw values of a chunk with an invalid weight, so that
    ``_check_weights`` can report the first one.
    """
    import pyarrow
    import pyarrow.compute as compute

    if pyarrow.types.is_string(array.type) or pyarrow.types.is_large_string(array.type):
        try:
            array = compute.cast(compute.utf8_trim_whitespace(array), pyarrow.float64())
        except pyarrow.ArrowInvalid:
            return pd.Series(array.to_pylist(), dtype=object)
    if pyarrow.types.is_integer(array.type) or pyarrow.types.is_floating(array.type):
        return pd.Series(array.to_numpy(zero_copy_only=False).astype(np.float64))
    return pd.Series(array.to_pylist(), dtype=object)


def _check_columns(path: Path, expected: list[str], found: list[str]) -> None:
    missing = [column for column in expected if column not in found]
    if missing:
        raise DataFormatError(
            f"{path}: missing column(s) {missing}; found the columns {list(found)}. Name the "
            f"columns with --row-id-column, --col-id-column and --weight-column (row_id_column, "
            f"col_id_column and weight_column in Python)"
        )


def _not_utf8(path: Path) -> DataFormatError:
    """Build the error for a file that is not UTF-8, naming its first undecodable line."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                return DataFormatError(
                    f"{path}, line {number}: the file is not UTF-8 text ({error.reason} at "
                    f"byte {error.start} of the line); re-save it as UTF-8"
                )
    return DataFormatError(f"{path}: the file is not UTF-8 text; re-save it as UTF-8")


def _record_location(path: Path, parquet: bool, record: int) -> str:
    """Return ``"line N"`` (text) or ``"row N"`` (Parquet) of the 0-based data record ``record``.

    Text files are scanned up to the record, which is done only for messages. Both text
    readers skip blank lines, so the scan counts the non-blank lines after the header.
    """
    if parquet:
        return f"row {record + 1}"
    # NOTE: a quoted field that spans lines shifts the count; the message then names a
    # line up to that many lines too early.
    seen_header = False
    count = -1
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if not seen_header:
                seen_header = True
                continue
            count += 1
            if count == record:
                return f"line {number}"
    return f"data line {record + 1}"


def _check_ids(
    chunk: _Chunk, path: Path, row_column: str, col_column: str, locate: Callable[[int], str]
) -> None:
    """Raise for the first pair whose row or column id is null or empty."""
    for column, codes, categories in (
        (row_column, chunk.row_codes, chunk.row_categories),
        (col_column, chunk.col_codes, chunk.col_categories),
    ):
        empty_category = np.append(categories == "", True)  # (n_categories + 1,), last for -1
        bad = np.flatnonzero(empty_category[codes])
        if len(bad) > 0:
            raise DataFormatError(
                f"{path}, {locate(int(bad[0]))}: the id in the column {column!r} is empty or "
                f"missing; every pair needs a row id and a column id"
            )


def _check_weights(
    values: pd.Series, path: Path, column: str, locate: Callable[[int], str]
) -> np.ndarray:
    """Convert one chunk of weights to float32, raising for the first invalid value."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        non_numeric = np.zeros(len(values), dtype=bool)
    else:
        text = values.map(lambda value: "" if pd.isna(value) else str(value).strip())
        numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        non_numeric = np.isnan(numbers) & ~text.str.lower().isin(["", "nan"]).to_numpy()
    with np.errstate(over="ignore"):
        stored = numbers.astype(np.float32)  # (n,) the values training uses
    valid = np.isfinite(numbers) & (numbers > 0)  # (n,)
    checks = (
        (non_numeric, "is not a number"),
        (np.isnan(numbers), "is missing or NaN"),
        (~valid, "is not a finite positive number"),
        (~np.isfinite(stored) | (stored <= 0), "is outside the float32 range (about 1.4e-45 to 3.4e38)"),
    )
    for invalid, problem in checks:
        bad = np.flatnonzero(invalid)
        if len(bad) > 0:
            value = values.iloc[bad[0]]
            raise DataFormatError(
                f"{path}, {locate(int(bad[0]))}: the weight in the column {column!r} {problem} "
                f"(value {value.item() if isinstance(value, np.generic) else value!r}); weights "
                f"are confidences and must be finite numbers > 0"
            )
    return stored


def _log_entities_without_pairs(data: InteractionData) -> None:
    """Log the count of rows and columns that have no positive pair; they are kept."""
    for label, table, index in (("row", data.rows, data.pairs[:, 0]), ("column", data.cols, data.pairs[:, 1])):
        counts = np.bincount(index, minlength=len(table))  # (n,)
        without = np.flatnonzero(counts == 0)
        if len(without) > 0:
            logger.warning(
                "%s: %d of %d %ss have no interactions, e.g. %s. They are kept: the model "
                "learns them as negatives only and scores them through their features, if any",
                data.name,
                len(without),
                len(table),
                label,
                table["id"].iloc[without[:EXAMPLE_COUNT]].tolist(),
            )

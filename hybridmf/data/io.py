"""File input and output: readers of delimited text that report problems by file, line and
value, and atomic writes of text and tables."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hybridmf.data.errors import DataFormatError


def read_fixed_columns(
    path: str | os.PathLike,
    names: Sequence[str],
    sep: str = "\t",
    required: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a headerless delimited file whose every line has exactly ``len(names)`` fields.

    Field counts are checked on the raw bytes with numpy, so a malformed line is reported
    with its number before pandas parses the file. Blank lines are skipped; Windows line
    endings and a UTF-8 byte order mark are accepted.

    Args:
        path: The file to read.
        names: Column names, one per field.
        sep: The one-character field separator.
        required: Columns that must not be empty; all columns when None.

    Returns:
        A data frame of strings with the columns ``names`` plus ``line``, the 1-based line
        number of each record in the file.

    Raises:
        DataFormatError: When the file is empty, is not UTF-8 text, a line has the wrong
            number of fields, or a required field is empty.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "pairs.txt"
        >>> _ = path.write_text("d1\\ta1\\r\\nd2\\ta2\\r\\n")
        >>> read_fixed_columns(path, ["drug", "adr"]).values.tolist()
        [['d1', 'a1', 1], ['d2', 'a2', 2]]
    """
    path = Path(path)
    raw = path.read_bytes()
    if not raw.strip():
        raise DataFormatError(
            f"{path}: the file is empty; expected lines of {len(names)} "
            f"{_separator_name(sep)}-separated fields ({', '.join(names)})"
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataFormatError(
            f"{path}, line {line}: the file is not UTF-8 text ({error.reason} at byte "
            f"{error.start}); re-save it as UTF-8"
        ) from None

    line_numbers, field_counts = _count_fields(raw, sep)
    wrong = np.flatnonzero(field_counts != len(names))
    if len(wrong) > 0:
        number = int(line_numbers[wrong[0]])
        text = raw.splitlines()[number - 1].decode("utf-8").rstrip("\r")
        raise DataFormatError(
            f"{path}, line {number}: expected {len(names)} {_separator_name(sep)}-separated "
            f"fields ({', '.join(names)}), found {int(field_counts[wrong[0]])}: {text[:120]!r}"
            f" ({len(wrong)} line(s) with a wrong field count in total)"
        )

    table = pd.read_csv(
        path,
        sep=sep,
        header=None,
        names=list(names),
        dtype=str,
        keep_default_na=False,
        skip_blank_lines=True,
        encoding="utf-8-sig",
    )
    table = table.apply(lambda column: column.str.strip())
    table["line"] = line_numbers
    for column in names if required is None else required:
        empty = np.flatnonzero(table[column].to_numpy() == "")
        if len(empty) > 0:
            raise DataFormatError(
                f"{path}, line {int(line_numbers[empty[0]])}: the field {column!r} is empty"
            )
    return table


def _count_fields(raw: bytes, sep: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the 1-based numbers and the field counts of the non-blank lines of ``raw``."""
    data = np.frombuffer(raw, dtype=np.uint8)
    line_ends = np.flatnonzero(data == ord("\n"))
    if len(data) and data[-1] != ord("\n"):
        line_ends = np.append(line_ends, len(data))
    line_starts = np.concatenate([[0], line_ends[:-1] + 1])
    separators = np.flatnonzero(data == ord(sep))
    separators_per_line = np.bincount(
        np.searchsorted(line_ends, separators), minlength=len(line_ends)
    )
    # A line is blank when it contains only whitespace, so count its non-space bytes.
    non_space = np.isin(data, np.frombuffer(b" \t\r\n", dtype=np.uint8), invert=True)
    non_space_before = np.concatenate([[0], np.cumsum(non_space)])
    content = non_space_before[line_ends] - non_space_before[line_starts]
    keep = content > 0
    return np.flatnonzero(keep) + 1, separators_per_line[keep] + 1


def _separator_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", " ": "space"}.get(sep, repr(sep))


def _current_umask() -> int:
    """Return the process umask. Reading it means setting it, so it is set straight back.

    NOTE: a file that another thread creates between the two calls gets umask 0.
    """
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Write a file through a temporary sibling and rename it into place.

    A crash leaves either the old file or none, never a half-written file under ``path``.
    The file gets the permissions of a newly created file under the process umask
    (``mkstemp`` alone would leave it readable by its owner only).

    Args:
        path: The destination.
        write: Called with the temporary path; it must write the whole content there.

    Returns:
        The destination path.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
        >>> _ = write_atomic(target, lambda tmp: tmp.write_text("done"))
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


# File name suffixes of the tables that write_table writes, with their format.
TABLE_SUFFIXES = {".csv": "csv", ".parquet": "parquet"}


def table_format(path: str | os.PathLike) -> str:
    """Return ``"csv"`` or ``"parquet"`` from the suffix of a table's file name.

    Raises:
        ValueError: When the suffix is neither ``.csv`` nor ``.parquet``.

    Example:
        >>> table_format("novel.CSV"), table_format("out/novel.parquet")
        ('csv', 'parquet')
    """
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(
            f"{path}: unknown table format {suffix or '(no suffix)'!r}; use a file name ending in "
            f"{' or '.join(TABLE_SUFFIXES)}"
        )
    return TABLE_SUFFIXES[suffix]


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a data frame atomically as CSV or Parquet, chosen by the file name suffix.

    The index is not written. Parquet needs pyarrow (the ``parquet`` extra).

    Args:
        frame: The table.
        path: Destination ending in ``.csv`` or ``.parquet``.

    Returns:
        The destination path.

    Raises:
        ValueError: When the suffix is neither ``.csv`` nor ``.parquet``.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "scores.csv"
        >>> _ = write_table(pd.DataFrame({"id": ["a"], "score": [0.5]}), target)
        >>> target.read_text()
        'id,score\\na,0.5\\n'
    """
    if table_format(path) == "csv":
        return write_atomic(path, lambda temporary: frame.to_csv(temporary, index=False))
    return write_atomic(path, lambda temporary: frame.to_parquet(temporary, index=False))

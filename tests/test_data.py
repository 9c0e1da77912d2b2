"""Unit tests of the interaction data set, the delimited reader and the MEF loader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridmf.data import mef
from hybridmf.data.errors import DataFormatError, DataNotFoundError
from hybridmf.data.interactions import InteractionData
from hybridmf.data.io import read_fixed_columns, write_atomic
from hybridmf.data.mef import MEFSource, load_mef


def _entities(prefix: str, count: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(count)], "name": [f"name {i}" for i in range(count)]})


def test_ids_map_to_contiguous_indices():
    pairs = pd.DataFrame({"row_id": ["r2", "r0", "r2"], "col_id": ["c1", "c0", "c0"]})
    data = InteractionData.from_frames(_entities("r", 3), _entities("c", 2), pairs)

    assert data.pairs.tolist() == [[0, 0], [2, 0], [2, 1]]
    assert data.pairs.dtype == np.int64
    assert data.column_counts().tolist() == [2, 1]


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ({"row_id": ["r0", "r9"], "col_id": ["c0", "c0"]}, r"pairs, line 2: unknown row id 'r9'"),
        ({"row_id": ["r0", "r1"], "col_id": ["c0", "x"]}, r"pairs, line 2: unknown column id 'x'"),
        ({"row_id": ["r0", "r0"], "col_id": ["c1", "c1"]}, r"pairs, line 2: duplicate pair \('r0', 'c1'\)"),
    ],
)
def test_invalid_pairs_raise(pairs, message):
    with pytest.raises(DataFormatError, match=message):
        InteractionData.from_frames(_entities("r", 2), _entities("c", 2), pd.DataFrame(pairs))


def test_duplicate_pairs_dropped_when_asked(caplog):
    pairs = pd.DataFrame({"row_id": ["r0", "r0", "r1"], "col_id": ["c1", "c1", "c0"]})
    data = InteractionData.from_frames(_entities("r", 2), _entities("c", 2), pairs, drop_duplicates=True)

    assert data.n_pairs == 2
    assert "dropped 1 duplicate pair" in caplog.text


def test_repeated_entity_id_raises():
    rows = pd.DataFrame({"id": ["r0", "r0"], "name": ["a", "b"]})
    with pytest.raises(DataFormatError, match=r"line 2: the id 'r0' appears more than once"):
        InteractionData.from_frames(rows, _entities("c", 1), pd.DataFrame({"row_id": [], "col_id": []}))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"the file is empty"),
        (b"  \n\n", r"the file is empty"),
        (b"a\tb\nc\td\te\n", r"line 2: expected 2 tab-separated fields \(drug, adr\), found 3: 'c\\td\\te'"),
        (b"a\tb\n\nonly\n", r"line 3: expected 2 tab-separated fields \(drug, adr\), found 1"),
        (b"a\tb\n\tb\n", r"line 2: the field 'drug' is empty"),
        (b"a\tb\n\xff\xfe\tx\n", r"line 2: the file is not UTF-8 text"),
    ],
)
def test_reader_reports_file_and_line(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "pairs.txt"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message) as error:
        read_fixed_columns(path, ["drug", "adr"])
    assert str(path) in str(error.value)


def test_reader_accepts_crlf_bom_and_blank_lines(tmp_path: Path):
    path = tmp_path / "pairs.txt"
    path.write_bytes(b"\xef\xbb\xbfa\tb\r\n\r\nc\td\r\n")
    table = read_fixed_columns(path, ["drug", "adr"])

    assert table[["drug", "adr"]].values.tolist() == [["a", "b"], ["c", "d"]]
    assert table["line"].tolist() == [1, 3]


def test_write_atomic_keeps_old_file_on_failure(tmp_path: Path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def fail(temporary: Path) -> None:
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, fail)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_write_atomic_follows_umask(tmp_path: Path):
    previous = os.umask(0o022)
    try:
        written = write_atomic(tmp_path / "results.csv", lambda temporary: temporary.write_text("a,b\n"))
    finally:
        os.umask(previous)

    assert stat.S_IMODE(written.stat().st_mode) == 0o644


def test_load_mef_layout(tiny_mef_dir: Path):
    data = load_mef(tiny_mef_dir)

    assert (data.n_rows, data.n_cols) == (12, 10)
    assert list(data.rows.columns) == ["id", "drugbank_id", "kegg_id", "name", "smiles"]
    assert data.rows["kegg_id"].iloc[0] == ""
    assert data.rows["id"].iloc[0] == "-100"


@pytest.mark.parametrize(
    ("file", "line", "message"),
    [
        ("association.txt", "-999\tC0000000", r"association.txt, line \d+: unknown drug id '-999', not listed in .*drug.txt"),
        ("association.txt", "-100\tC9999999", r"association.txt, line \d+: unknown ADR id 'C9999999'"),
        ("association.txt", "-100\tC0000000\textra", r"association.txt, line \d+: expected 2 tab-separated fields"),
        ("drug.txt", "-100\tDB1\t\"\"\tdup\tCC", r"drug.txt, line 13: the id '-100' appears more than once"),
        ("adr.txt", "C0000001", r"adr.txt, line 11: expected 2 tab-separated fields \(id, name\), found 1"),
    ],
)
def test_malformed_mef_file_names_file_line_value(tiny_mef_dir: Path, file: str, line: str, message: str):
    path = tiny_mef_dir / "data" / file
    path.write_text(path.read_text() + line + "\n")
    with pytest.raises(DataFormatError, match=message):
        load_mef(tiny_mef_dir)


def test_data_dir_from_environment(tiny_mef_dir: Path, monkeypatch):
    monkeypatch.setenv(mef.DATA_DIR_ENV, str(tiny_mef_dir))
    assert MEFSource().root == tiny_mef_dir
    assert load_mef().n_rows == 12


def test_missing_data_dir_names_flag_and_variable(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match=r"--data-dir or HYBRIDMF_DATA_DIR"):
        MEFSource(tmp_path / "absent")


def test_missing_file_in_data_dir(tmp_path: Path):
    with pytest.raises(DataNotFoundError, match=r"drug.txt not found"):
        load_mef(tmp_path)


def test_download_verifies_checksum(tiny_mef_dir: Path, tmp_path: Path, monkeypatch):
    """Downloads come from a file:// mirror here; the bytes must match the pinned SHA-256."""
    monkeypatch.delenv(mef.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(mef.BASE_URL_ENV, tiny_mef_dir.as_uri())
    digest = __import__("hashlib").sha256((tiny_mef_dir / "data" / "adr.txt").read_bytes()).hexdigest()
    monkeypatch.setitem(mef.MEF_SHA256, "data/adr.txt", digest)
    cache = tmp_path / "cache"
    source = MEFSource(cache_dir=cache)

    assert source.path("data/adr.txt").read_bytes() == (tiny_mef_dir / "data" / "adr.txt").read_bytes()
    with pytest.raises(DataFormatError, match=r"checksum mismatch .*drug.txt.*the file was not saved"):
        source.path("data/drug.txt")
    assert not (cache / "data" / "drug.txt").exists()


def test_download_offline_names_flag_and_variable(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(mef.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(mef.BASE_URL_ENV, (tmp_path / "nowhere").as_uri())
    with pytest.raises(DataNotFoundError, match=r"could not download .*--data-dir PATH or the environment variable HYBRIDMF_DATA_DIR"):
        MEFSource(cache_dir=tmp_path / "cache").path("data/drug.txt")

"""Tests of reading your own interaction, entity and feature files (hybridmf.data.files)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridmf.config import FitConfig, parse_config
from hybridmf.data import files
from hybridmf.data.errors import DataFormatError
from hybridmf.data.features import align_features
from hybridmf.data.files import load_interaction_files
from hybridmf.data.io import read_fixed_columns
from hybridmf.data.mef import ASSOCIATION_COLUMNS, load_mef
from hybridmf.training import load_data, run_fit

REPOSITORY = Path(__file__).resolve().parents[1]

ROWS = "id,name,smiles\nd1,aspirin,CC(=O)Oc1ccccc1C(=O)O\nd2,ibuprofen,\nd3,caffeine,Cn1cnc2c1c(=O)n(C)c(=O)n2C\n"
COLS = "id,name\na1,rash\na2,nausea\n"
PAIRS = "row_id,col_id\nd2,a1\nd1,a2\nd1,a1\n"


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.fixture(params=["pyarrow", "pandas"])
def text_reader(request, monkeypatch) -> str:
    """Run a test with each of the two text readers."""
    if request.param == "pandas":
        monkeypatch.setattr(files, "_pyarrow_installed", lambda: False)
    return request.param


# ---------------------------------------------------------------------------------------
# Reading valid files
# ---------------------------------------------------------------------------------------


def test_tables_fix_order_and_names(tmp_path: Path, text_reader: str):
    data = load_interaction_files(
        _write(tmp_path, "pairs.csv", PAIRS), rows=_write(tmp_path, "rows.csv", ROWS), cols=_write(tmp_path, "cols.csv", COLS)
    )

    assert data.rows["id"].tolist() == ["d1", "d2", "d3"]
    assert data.rows["name"].tolist() == ["aspirin", "ibuprofen", "caffeine"]
    assert data.rows["smiles"].tolist()[1] == ""
    assert data.rows["smiles"].tolist()[2] == "Cn1cnc2c1c(=O)n(C)c(=O)n2C"
    assert data.cols["id"].tolist() == ["a1", "a2"]
    assert data.pairs.tolist() == [[0, 0], [0, 1], [1, 0]]
    assert data.pairs.dtype == np.int64
    assert data.weights is None
    assert data.name == "pairs"


def test_crlf_bom_and_blank_lines(tmp_path: Path, text_reader: str):
    pairs = _write(tmp_path, "pairs.csv", b"\xef\xbb\xbfrow_id,col_id\r\nd2,a1\r\n\r\nd1,a2\r\n")
    rows = _write(tmp_path, "rows.csv", b"\xef\xbb\xbfid,name\r\nd1,aspirin\r\nd2,ibuprofen\r\n")
    data = load_interaction_files(pairs, rows=rows)

    assert data.rows["name"].tolist() == ["aspirin", "ibuprofen"]
    assert data.cols["id"].tolist() == ["a1", "a2"]
    assert data.pairs.tolist() == [[0, 1], [1, 0]]


def test_tab_separated_and_custom_columns(tmp_path: Path, text_reader: str):
    pairs = _write(tmp_path, "pairs.tsv", "user\titem\tclicks\nu1\ti9\t3\nu2\ti9\t1\n")
    data = load_interaction_files(pairs, row_id_column="user", col_id_column="item", weight_column="clicks")

    assert data.rows["id"].tolist() == ["u1", "u2"]
    assert data.weights.tolist() == [3.0, 1.0]
    assert data.weights.dtype == np.float32


def test_ids_and_names_are_stripped(tmp_path: Path, text_reader: str):
    pairs = _write(tmp_path, "pairs.csv", "row_id,col_id\n d1 ,a1\nd1, a1\n")
    rows = _write(tmp_path, "rows.csv", "id,name\nd1 , aspirin \n")
    data = load_interaction_files(pairs, rows=rows)

    assert data.rows["name"].tolist() == ["aspirin"]
    assert data.cols["id"].tolist() == ["a1"]
    assert data.pairs.tolist() == [[0, 0]]


def test_name_defaults_to_id(tmp_path: Path):
    rows = _write(tmp_path, "rows.csv", "id,name\nd1,\nd2,ibuprofen\n")
    cols = _write(tmp_path, "cols.csv", "id\na1\na2\n")
    data = load_interaction_files(_write(tmp_path, "pairs.csv", "row_id,col_id\nd1,a1\nd2,a2\n"), rows=rows, cols=cols)

    assert data.rows["name"].tolist() == ["d1", "ibuprofen"]
    assert data.cols["name"].tolist() == ["a1", "a2"]


def test_without_tables_ids_keep_first_appearance(tmp_path: Path, text_reader: str):
    data = load_interaction_files(_write(tmp_path, "pairs.csv", "row_id,col_id\nz,b\na,c\nz,a\n"))

    assert data.rows["id"].tolist() == ["z", "a"]
    assert data.rows["name"].tolist() == ["z", "a"]
    assert data.cols["id"].tolist() == ["b", "c", "a"]
    assert data.pairs.tolist() == [[0, 0], [0, 2], [1, 1]]


def test_many_chunks_match_one_chunk(tmp_path: Path, text_reader: str):
    """Ids first seen in later chunks get later indices; line numbers stay right."""
    generator = np.random.default_rng(0)
    lines = [f"r{i},c{j}" for i, j in zip(generator.integers(0, 300, 20_000), generator.integers(0, 50, 20_000))]
    path = _write(tmp_path, "pairs.csv", "row_id,col_id\n" + "\n".join(lines) + "\n")
    # The pyarrow reader reads blocks of at least 64 KiB, about 5,000 of these lines.
    chunked = load_interaction_files(path, chunk_size=1_000)
    whole = load_interaction_files(path, chunk_size=1_000_000)

    first_seen = list(dict.fromkeys(line.split(",")[0] for line in lines))
    assert chunked.rows["id"].tolist() == first_seen
    assert whole.rows["id"].tolist() == first_seen
    assert np.array_equal(chunked.pairs, whole.pairs)

    _write(tmp_path, "pairs.csv", "row_id,col_id\n" + "\n".join(lines) + "\n,c1\n")
    with pytest.raises(DataFormatError, match=r"pairs.csv, line 20002: the id in the column 'row_id'"):
        load_interaction_files(path, chunk_size=1_000)


def test_duplicates_merged_with_max_weight(tmp_path: Path, caplog, text_reader: str):
    pairs = _write(tmp_path, "pairs.csv", "row_id,col_id,w\nd2,a1,1\nd1,a1,2\nd2,a1,5\nd2,a1,3\n")
    with caplog.at_level(logging.WARNING):
        data = load_interaction_files(pairs, weight_column="w")

    assert data.pairs.tolist() == [[0, 0], [1, 0]]
    assert data.weights.tolist() == [5.0, 2.0]
    assert "pairs.csv: dropped 2 duplicate pair(s), keeping the maximum weight of each pair" in caplog.text


def test_weights_follow_sorted_pairs(tmp_path: Path):
    pairs = _write(tmp_path, "pairs.csv", "row_id,col_id,w\nd1,a2,0.5\nd2,a1,4\nd1,a1,2\n")
    data = load_interaction_files(pairs, rows=_write(tmp_path, "rows.csv", ROWS), cols=_write(tmp_path, "cols.csv", COLS), weight_column="w")

    assert data.pairs.tolist() == [[0, 0], [0, 1], [1, 0]]
    assert data.weights.tolist() == [2.0, 0.5, 4.0]


def test_unknown_ids_added_when_allowed(tmp_path: Path, caplog):
    pairs = _write(tmp_path, "pairs.csv", "row_id,col_id\nd1,a1\nx9,a1\nx8,a2\nx9,a2\n")
    with caplog.at_level(logging.WARNING):
        data = load_interaction_files(pairs, rows=_write(tmp_path, "rows.csv", ROWS), allow_unknown_ids=True)

    assert data.rows["id"].tolist() == ["d1", "d2", "d3", "x9", "x8"]
    assert data.rows["name"].tolist()[3:] == ["x9", "x8"]
    assert data.rows["smiles"].tolist()[3:] == ["", ""]
    assert "added 2 row id(s) that" in caplog.text
    assert "e.g. ['x9', 'x8'] (3 pair(s))" in caplog.text


def test_entities_without_pairs_are_kept(tmp_path: Path, caplog):
    with caplog.at_level(logging.WARNING):
        data = load_interaction_files(
            _write(tmp_path, "pairs.csv", PAIRS), rows=_write(tmp_path, "rows.csv", ROWS), cols=_write(tmp_path, "cols.csv", COLS)
        )

    assert data.n_rows == 3
    assert "1 of 3 rows have no interactions, e.g. ['d3']" in caplog.text


def test_feature_tables_keyed_by_path(tmp_path: Path):
    dense = _write(tmp_path, "dense.csv", "id,logp,weight\nd3,0.5,194\nd1,1.2,180\nd2,3.5,206\n")
    tokens = _write(tmp_path, "targets.tsv", "id\ttokens\nd1\tPTGS1;PTGS2\nd2\tPTGS2\nd3\t\n")
    adr = _write(tmp_path, "adr.csv", "id,organ\na1,1\na2,0\n")
    data = load_interaction_files(
        _write(tmp_path, "pairs.csv", PAIRS),
        rows=_write(tmp_path, "rows.csv", ROWS),
        row_feature_files=[dense, str(tokens)],
        col_feature_files=[adr],
    )

    assert list(data.row_features) == [str(dense), str(tokens)]
    assert list(data.col_features) == [str(adr)]
    assert data.row_features[str(tokens)].to_dict("index") == {
        "d1": {"PTGS1": 1, "PTGS2": 1},
        "d2": {"PTGS1": 0, "PTGS2": 1},
        "d3": {"PTGS1": 0, "PTGS2": 0},
    }
    values, missing = align_features(data.row_features[str(dense)], data.row_ids, str(dense))
    assert values.tolist() == [[1.2000000476837158, 180.0], [3.5, 206.0], [0.5, 194.0]]
    assert not missing.any()


def test_missing_feature_rows_zero_filled_later(tmp_path: Path, caplog):
    features = _write(tmp_path, "partial.csv", "id,x\nd1,1\n")
    data = load_interaction_files(
        _write(tmp_path, "pairs.csv", PAIRS), row_feature_files=[features], missing_features="zero"
    )
    with caplog.at_level(logging.WARNING):
        values, missing = align_features(data.row_features[str(features)], data.row_ids, str(features), missing="zero")

    assert data.rows["id"].tolist() == ["d2", "d1"]
    assert missing.tolist() == [True, False]
    assert values.tolist() == [[0.0], [1.0]]
    assert f"{features}: 1 of 2 ids have no feature row, e.g. ['d2']" in caplog.text


# ---------------------------------------------------------------------------------------
# Invalid files: every message names the file and, where there is one, the line
# ---------------------------------------------------------------------------------------

TEXT_ERRORS = [
    # (interactions file content, keyword arguments, expected message)
    ("row_id,adr\nd1,a1\n", {}, r"pairs.csv: missing column\(s\) \['col_id'\]; found the columns \['row_id', 'adr'\]"),
    ("row_id,col_id\nd1,a1\n", {"weight_column": "w"}, r"missing column\(s\) \['w'\]; found the columns \['row_id', 'col_id'\]"),
    ("", {}, r"pairs.csv: the file is empty; expected a header line with the columns \['row_id', 'col_id'\]"),
    ("row_id,col_id\n\n", {}, r"pairs.csv: no interactions below the header line"),
    ("row_id,col_id\nd1,a1\n,a2\n", {}, r"pairs.csv, line 3: the id in the column 'row_id' is empty or missing"),
    ("row_id,col_id\nd1,a1\n\nd2,\n", {}, r"pairs.csv, line 4: the id in the column 'col_id' is empty or missing"),
    ("row_id,col_id,w\nd1,a1,1\nd2,a2,high\n", {"weight_column": "w"},
     r"pairs.csv, line 3: the weight in the column 'w' is not a number \(value 'high'\)"),
    ("row_id,col_id,w\nd1,a1,1\n\nd2,a2,\n", {"weight_column": "w"},
     r"pairs.csv, line 4: the weight in the column 'w' is missing or NaN"),
    ("row_id,col_id,w\nd1,a1,NaN\n", {"weight_column": "w"}, r"line 2: the weight in the column 'w' is missing or NaN"),
    ("row_id,col_id,w\nd1,a1,2\nd2,a1,-1\n", {"weight_column": "w"},
     r"line 3: the weight in the column 'w' is not a finite positive number \(value -1(\.0)?\)"),
    ("row_id,col_id,w\nd1,a1,inf\n", {"weight_column": "w"}, r"line 2: the weight in the column 'w' is not a finite positive"),
    ("row_id,col_id,w\nd1,a1,2\nd2,a1,1e39\n", {"weight_column": "w"},
     r"line 3: the weight in the column 'w' is outside the float32 range .* \(value 1e\+?39(\.0)?\)"),
    ("row_id,col_id,w\nd1,a1,1e-50\n", {"weight_column": "w"}, r"line 2: the weight in the column 'w' is outside the float32 range"),
    ("row_id,col_id\nd1,a1,extra\n", {}, r"pairs.csv: not a rectangular table"),
    (b"row_id,col_id\nd1,a1\n\xe9t\xe9,a2\n", {}, r"pairs.csv, line 3: the file is not UTF-8 text"),
    ("row_id,col_id\nd1,a1\nd9,a1\nd8,a2\nd9,a2\n", {"rows": ROWS},
     r"pairs.csv: 2 row id\(s\) of the column 'row_id' are not listed in .*rows.csv, e.g. \['d9', 'd8'\] "
     r"\(first on line 3; 3 pair\(s\) in total\)\. Add them to .*rows.csv, or pass allow_unknown_ids=True"),
    ("row_id,col_id\nd1,a1\nd1,a7\n", {"cols": COLS}, r"1 column id\(s\) of the column 'col_id' are not listed in .*cols.csv, e.g. \['a7'\]"),
]


@pytest.mark.parametrize(("content", "options", "message"), TEXT_ERRORS)
def test_invalid_interactions_file(tmp_path: Path, text_reader: str, content, options: dict, message: str):
    options = dict(options)
    for table in ("rows", "cols"):
        if table in options:
            options[table] = _write(tmp_path, f"{table}.csv", options[table])
    with pytest.raises(DataFormatError, match=message):
        load_interaction_files(_write(tmp_path, "pairs.csv", content), **options)


TABLE_ERRORS = [
    # (file name, content, argument, expected message)
    ("rows.csv", "", "rows", r"rows.csv: the file is empty"),
    ("rows.csv", "key,name\nd1,aspirin\n", "rows", r"rows.csv: the row table has no column 'id'; found the columns \['key', 'name'\]"),
    ("cols.csv", "name\nrash\n", "cols", r"cols.csv: the column table has no column 'id'; found the columns \['name'\]"),
    ("rows.csv", "id,name\nd1,a\n,b\n", "rows", r"rows.csv, line 3: the id is empty \(1 row\(s\) without an id\)"),
    ("rows.csv", "id,name\nd1,a\nd1,b\n", "rows", r"rows.csv, line 3: the id 'd1' appears more than once"),
    ("rows.csv", "id,name\n", "rows", r"rows.csv: no data rows below the header line"),
    ("rows.csv", b"id,name\nd1,caf\xe9\n", "rows", r"rows.csv: the file is not UTF-8 text"),
    ("features.csv", "id,x\nd1,1\n", "row_feature_files", r"features.csv: 1 of 2 ids have no feature row, e.g. \['d2'\]"),
    ("features.csv", "id,x\nd1,1\nd2,big\n", "row_feature_files", r"features.csv, line 3: column 'x' has the non-numeric value 'big'"),
    ("features.csv", "id,tokens,x\nd1,P1,1\n", "row_feature_files",
     r"features.csv: a token table has only the columns 'id' and 'tokens', found also \['x'\]"),
    ("features.csv", "", "col_feature_files", r"features.csv: the file is empty"),
]


@pytest.mark.parametrize(("name", "content", "argument", "message"), TABLE_ERRORS)
def test_invalid_entity_or_feature_table(tmp_path: Path, name: str, content, argument: str, message: str):
    path = _write(tmp_path, name, content)
    value = [path] if argument.endswith("files") else path
    with pytest.raises(DataFormatError, match=message):
        load_interaction_files(_write(tmp_path, "pairs.csv", "row_id,col_id\nd1,a1\nd2,a2\n"), **{argument: value})


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"row_id_column": "id", "col_id_column": "id"}, ValueError, r"row_id_column and col_id_column must differ"),
        ({"weight_column": "row_id"}, ValueError, r"weight_column 'row_id' must differ from the id columns"),
        ({"missing_features": "drop"}, ValueError, r"missing_features must be 'error' or 'zero', got 'drop'"),
        ({"rows": "absent.csv"}, FileNotFoundError, r"row table 'absent.csv' not found"),
        ({"row_feature_files": "single.csv"}, TypeError, r"row_feature_files must be a list of paths"),
    ],
)
def test_invalid_arguments(tmp_path: Path, options: dict, error: type, message: str):
    with pytest.raises(error, match=message):
        load_interaction_files(_write(tmp_path, "pairs.csv", PAIRS), **options)


def test_unsupported_suffix(tmp_path: Path):
    with pytest.raises(ValueError, match=r"pairs.xlsx: unsupported suffix '.xlsx', expected one of \['.csv'"):
        load_interaction_files(_write(tmp_path, "pairs.xlsx", PAIRS))


def test_feature_file_listed_twice(tmp_path: Path):
    features = _write(tmp_path, "features.csv", "id,x\nd1,1\nd2,2\n")
    with pytest.raises(ValueError, match=r"row_feature_files lists '.*features.csv' twice"):
        load_interaction_files(_write(tmp_path, "pairs.csv", PAIRS), row_feature_files=[features, features])


# ---------------------------------------------------------------------------------------
# Parquet
# ---------------------------------------------------------------------------------------


def test_parquet_round_trip(tmp_path: Path):
    pairs = pd.DataFrame({"row_id": ["d2", "d1", "d1", "d1"], "col_id": ["a1", "a2", "a1", "a2"], "w": [1.0, 2.0, 3.0, 4.0]})
    rows = pd.read_csv(tmp_path / _write(tmp_path, "rows.csv", ROWS), dtype=str, keep_default_na=False)
    features = pd.DataFrame({"id": ["d1", "d2", "d3"], "x": [0.5, 1.5, 2.5]})
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    features.to_csv(tmp_path / "features.csv", index=False)
    pairs.to_parquet(tmp_path / "pairs.parquet")
    rows.to_parquet(tmp_path / "rows.parquet")
    features.to_parquet(tmp_path / "features.parquet")

    from_text = load_interaction_files(
        tmp_path / "pairs.csv", rows=tmp_path / "rows.csv", weight_column="w", row_feature_files=[tmp_path / "features.csv"]
    )
    from_parquet = load_interaction_files(
        tmp_path / "pairs.parquet", rows=tmp_path / "rows.parquet", weight_column="w",
        row_feature_files=[tmp_path / "features.parquet"], chunk_size=3,
    )

    assert np.array_equal(from_parquet.pairs, from_text.pairs)
    assert from_parquet.weights.tolist() == from_text.weights.tolist() == [3.0, 4.0, 1.0]
    assert from_parquet.rows.to_dict("list") == from_text.rows.to_dict("list")
    assert from_parquet.cols.to_dict("list") == from_text.cols.to_dict("list")
    parquet_features = from_parquet.row_features[str(tmp_path / "features.parquet")]
    assert parquet_features.equals(from_text.row_features[str(tmp_path / "features.csv")])


def test_parquet_integer_ids_match_text_ids(tmp_path: Path):
    pd.DataFrame({"row_id": [3015, 71273], "col_id": [7, 7]}).to_parquet(tmp_path / "pairs.parquet")
    rows = _write(tmp_path, "rows.csv", "id,name\n71273,ropivacaine\n3015,diclofenac\n")
    data = load_interaction_files(tmp_path / "pairs.parquet", rows=rows)

    assert data.pairs.tolist() == [[0, 0], [1, 0]]
    assert data.cols["id"].tolist() == ["7"]


@pytest.mark.parametrize(
    ("pairs", "options", "message"),
    [
        ({"row_id": ["d1", None], "col_id": ["a1", "a2"]}, {}, r"pairs.parquet, row 2: the id in the column 'row_id' is empty"),
        ({"row_id": ["d1", "d1"], "col_id": ["a1", "  "]}, {}, r"pairs.parquet, row 2: the id in the column 'col_id' is empty"),
        ({"row_id": [1.0, np.nan], "col_id": ["a1", "a2"]}, {}, r"pairs.parquet, row 2: the id in the column 'row_id' is empty"),
        ({"row_id": ["d1", "d2"], "col_id": ["a1", "a2"], "w": [1.0, np.nan]}, {"weight_column": "w"},
         r"pairs.parquet, row 2: the weight in the column 'w' is missing or NaN"),
        ({"row_id": ["d1", "d2"], "col_id": ["a1", "a2"], "w": ["1", "x"]}, {"weight_column": "w"},
         r"pairs.parquet, row 2: the weight in the column 'w' is not a number \(value 'x'\)"),
        ({"row_id": ["d1", "d7"], "col_id": ["a1", "a2"]}, {"rows": True}, r"e.g. \['d7'\] \(first on row 2; 1 pair\(s\) in total\)"),
        ({"user": ["d1"], "col_id": ["a1"]}, {}, r"pairs.parquet: missing column\(s\) \['row_id'\]; found the columns \['user', 'col_id'\]"),
        ({"row_id": pd.Series([], dtype=str), "col_id": pd.Series([], dtype=str)}, {}, r"pairs.parquet: the table has no rows"),
    ],
)
def test_invalid_parquet_file(tmp_path: Path, pairs: dict, options: dict, message: str):
    pd.DataFrame(pairs).to_parquet(tmp_path / "pairs.parquet")
    if options.get("rows"):
        options = {**options, "rows": _write(tmp_path, "rows.csv", ROWS)}
    with pytest.raises(DataFormatError, match=message):
        load_interaction_files(tmp_path / "pairs.parquet", **options)


def test_parquet_entity_table_reports_row(tmp_path: Path):
    pd.DataFrame({"id": ["d1", "d1"], "name": ["a", "b"]}).to_parquet(tmp_path / "rows.parquet")
    with pytest.raises(DataFormatError, match=r"rows.parquet, row 2: the id 'd1' appears more than once"):
        load_interaction_files(_write(tmp_path, "pairs.csv", PAIRS), rows=tmp_path / "rows.parquet")


def test_not_a_parquet_file(tmp_path: Path):
    with pytest.raises(DataFormatError, match=r"pairs.parquet: not a readable Parquet file"):
        load_interaction_files(_write(tmp_path, "pairs.parquet", PAIRS))


def test_parquet_without_pyarrow_names_extra(tmp_path: Path, monkeypatch):
    path = _write(tmp_path, "pairs.parquet", b"PAR1")
    for module in ("pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=re.escape('needs pyarrow, which is not installed. Install the extra with pip install -e ".[parquet]"')):
        load_interaction_files(path)


# ---------------------------------------------------------------------------------------
# Memory at scale
# ---------------------------------------------------------------------------------------

MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    import numpy as np, pandas as pd
    from hybridmf.data.files import load_interaction_files

    def resident_mib():
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize() / 2**20

    rng = np.random.default_rng(0)
    n = 1_000_000
    rows = pd.Categorical.from_codes(rng.integers(0, 200_000, n), [f"r{i}" for i in range(200_000)])
    cols = pd.Categorical.from_codes(rng.integers(0, 50_000, n), [f"c{j}" for j in range(50_000)])
    pd.DataFrame({"row_id": rows.astype(str), "col_id": cols.astype(str)}).to_parquet(sys.argv[1])
    del rows, cols
    before = resident_mib()
    resource_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    data = load_interaction_files(sys.argv[1])
    # ru_maxrss also counts the generator above, so measure the current size right after loading.
    print(data.n_pairs, data.n_rows, data.n_cols, before, resident_mib(), resource_before)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_million_pairs_stay_small(tmp_path: Path):
    """1M pairs over 200,000 × 50,000 entities: a dense grid alone would be 10 GB as bool."""
    output = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "pairs.parquet")],
        capture_output=True, text=True, check=True, cwd=REPOSITORY, env={"PYTHONPATH": str(REPOSITORY), "PATH": ""},
    ).stdout.split()
    n_pairs, n_rows, n_cols = (int(value) for value in output[:3])
    before, after = float(output[3]), float(output[4])

    assert n_pairs > 990_000
    assert n_rows > 195_000
    assert n_cols == 50_000
    # The data set itself is 16 MB of pairs plus the id tables; allow ten times that.
    assert after - before < 400, f"resident memory grew by {after - before:.0f} MiB"


# ---------------------------------------------------------------------------------------
# Training from files
# ---------------------------------------------------------------------------------------


def _write_generic(data, associations: pd.DataFrame, folder: Path) -> dict[str, Path]:
    """Write an InteractionData and its pairs (in file order) in the generic file format."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"interactions": folder / "interactions.csv", "rows": folder / "rows.csv", "cols": folder / "cols.csv"}
    associations.to_csv(paths["interactions"], index=False)
    columns = [column for column in ("id", "name", "smiles") if column in data.rows.columns]
    data.rows[columns].to_csv(paths["rows"], index=False)
    data.cols[["id", "name"]].to_csv(paths["cols"], index=False)
    return paths


def test_load_data_dispatches(tmp_path: Path):
    pairs = _write(tmp_path, "pairs.csv", "row_id,col_id,w\nd2,a1,2\nd1,a2,1\n")
    config = FitConfig(interactions=str(pairs), rows=str(_write(tmp_path, "rows.csv", ROWS)), weight_column="w")
    data = load_data(config)

    assert data.n_rows == 3
    assert data.weights.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rows": "rows.csv"}, r"--rows need\(s\) --interactions FILE"),
        ({"row_feature_files": ("f.csv",), "weight_column": "w"}, r"--weight-column, --row-feature-files need\(s\) --interactions FILE"),
    ],
)
def test_own_data_options_need_interactions(options: dict, message: str):
    with pytest.raises(ValueError, match=message):
        load_data(FitConfig(**options))


def test_command_line_and_yaml_keys(tmp_path: Path):
    path = _write(tmp_path, "run.yaml", "interactions: p.parquet\nrows: r.csv\nrow_feature_files: [a.csv, b.csv]\n")
    config = parse_config(["--config", str(path), "--col-feature-files", "c.tsv", "--allow-unknown-ids"])

    assert config.interactions == "p.parquet"
    assert config.rows == "r.csv"
    assert config.row_feature_files == ("a.csv", "b.csv")
    assert tuple(config.col_feature_files) == ("c.tsv",)
    assert config.allow_unknown_ids is True


def test_fit_script_on_own_files(tiny_mef_dir: Path, tmp_path: Path):
    import importlib.util

    data = load_mef(tiny_mef_dir)
    associations = read_fixed_columns(tiny_mef_dir / "data" / "association.txt", ASSOCIATION_COLUMNS)
    associations = associations.rename(columns={"drug_id": "row_id", "adr_id": "col_id"})[["row_id", "col_id"]]
    paths = _write_generic(data, associations, tmp_path / "own")
    spec = importlib.util.spec_from_file_location("fit", REPOSITORY / "scripts" / "fit.py")
    fit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fit)

    out = tmp_path / "run"
    metrics = fit.main(
        ["--interactions", str(paths["interactions"]), "--rows", str(paths["rows"]), "--cols", str(paths["cols"]),
         "--max-epochs", "1", "--batch-size", "64", "--val-fraction", "0.2", "--out", str(out), "--no-progress"]
    )

    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
    assert json.loads((out / "config.json").read_text())["interactions"] == str(paths["interactions"])
    assert 0.0 <= metrics["auroc"] <= 1.0


@pytest.mark.integration
@pytest.mark.slow
def test_mef_as_files_gives_same_metrics(mef_dir: Path, tmp_path: Path):
    """MEF written as generic files trains to exactly the metrics of the built-in loader."""
    data = load_mef(mef_dir)
    associations = read_fixed_columns(mef_dir / "data" / "association.txt", ASSOCIATION_COLUMNS)
    associations = associations.rename(columns={"drug_id": "row_id", "adr_id": "col_id"})[["row_id", "col_id"]]
    paths = _write_generic(data, associations, tmp_path / "files")
    from_files = load_interaction_files(paths["interactions"], rows=paths["rows"], cols=paths["cols"])

    assert from_files.rows[["id", "name", "smiles"]].to_dict("list") == data.rows[["id", "name", "smiles"]].to_dict("list")
    assert from_files.cols[["id", "name"]].to_dict("list") == data.cols[["id", "name"]].to_dict("list")
    assert np.array_equal(from_files.pairs, data.pairs)

    # Large batches and a higher learning rate keep the test short and still move the metrics.
    common = {"max_epochs": 2, "batch_size": 20_000, "lr": 0.01, "seed": 0, "progress": False}
    built_in = run_fit(FitConfig(data_dir=str(mef_dir), out=str(tmp_path / "mef"), **common))
    generic = run_fit(
        FitConfig(interactions=str(paths["interactions"]), rows=str(paths["rows"]), cols=str(paths["cols"]),
                  out=str(tmp_path / "generic"), **common)
    )

    ignored = {"checkpoint", "last_checkpoint", "wall_seconds"}
    assert {key: value for key, value in generic.items() if key not in ignored} == {
        key: value for key, value in built_in.items() if key not in ignored
    }
    assert built_in["auroc"] > built_in["popularity_auroc"]


def test_own_data_fingerprints_from_smiles(tmp_path: Path):
    from hybridmf.scoring import Ranker, load_model

    config = FitConfig(
        interactions=str(_write(tmp_path, "pairs.csv", PAIRS)), rows=str(_write(tmp_path, "rows.csv", ROWS)),
        cols=str(_write(tmp_path, "cols.csv", COLS)), features="fingerprints", fingerprint_bits=64, k=2,
        max_epochs=1, val_fraction=0.0, progress=False, accelerator="cpu", out=str(tmp_path / "run"),
    )
    data = load_data(config)
    fingerprints = data.row_features["fingerprint"]

    assert fingerprints.shape == (3, 65)
    # ibuprofen has an empty SMILES: zero bits and the missing flag.
    assert fingerprints.loc["d2", "fingerprint_missing"] == 1
    assert fingerprints.loc["d1"].iloc[:64].sum() > 0
    run_fit(config)
    ranking = Ranker(load_model(tmp_path / "run" / "checkpoints" / "last.ckpt")).rank_molecules(["CCO"], k=2)
    assert len(ranking) == 2


def test_own_data_fingerprints_need_smiles(tmp_path: Path):
    config = FitConfig(
        interactions=str(_write(tmp_path, "pairs.csv", PAIRS)), rows=str(_write(tmp_path, "rows.csv", "id,name\nd1,a\nd2,b\n")),
        features="fingerprints", allow_unknown_ids=True,
    )

    with pytest.raises(ValueError, match=r"rows.csv has none; add an id,name,smiles table with --rows"):
        load_data(config)


def test_own_data_rejects_other_mef_sources(tmp_path: Path):
    config = FitConfig(interactions=str(_write(tmp_path, "pairs.csv", PAIRS)), drug_sources=("fingerprint", "atc"))

    with pytest.raises(ValueError, match=r"the MEF feature sources \['atc'\] .* need the MEF files"):
        load_data(config)

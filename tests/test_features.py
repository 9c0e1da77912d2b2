"""Unit tests of fingerprints, MEF feature loading, feature tables and scaling on tiny synthetic data."""

from __future__ import annotations

import logging
import re

import numpy as np
import pandas as pd
import pytest

from hybridmf.data import fingerprints
from hybridmf.data.errors import DataFormatError
from hybridmf.data.features import (
    ADR_SOURCES,
    DRUG_SOURCES,
    FEATURE_PRESETS,
    FeatureScaler,
    align_features,
    expand_feature_names,
    load_mef_features,
    multi_hot,
    read_feature_table,
)
from hybridmf.data.fingerprints import (
    MISSING_COLUMN,
    featurize_smiles,
    morgan_fingerprints,
    tanimoto_similarity,
)

# ---------------------------------------------------------------------------------------
# Fingerprints
# ---------------------------------------------------------------------------------------

# A cobalamin-like failure: pentavalent carbon parses but fails sanitization.
BAD_VALENCE = "C(C)(C)(C)(C)C"


def test_fingerprint_bit_counts_exact():
    assert int(featurize_smiles("C", radius=2).sum()) == 1
    assert int(featurize_smiles("CCO", radius=0).sum()) == 3
    assert int(featurize_smiles("c1ccccc1", radius=0).sum()) == 1
    assert int(featurize_smiles("c1ccccc1", radius=2).sum()) == 3


def test_unparseable_smiles_gets_zeros_and_warning(caplog):
    smiles = pd.Series({"d1": "CCO", "d2": BAD_VALENCE, "d3": "C1CC"})
    with caplog.at_level(logging.WARNING, logger="hybridmf.data.fingerprints"):
        table = morgan_fingerprints(smiles, n_bits=64)

    assert table.shape == (3, 65)
    assert list(table.columns[:2]) == ["bit_0", "bit_1"]
    assert table.columns[-1] == MISSING_COLUMN
    assert table.index.tolist() == ["d1", "d2", "d3"]
    assert table[MISSING_COLUMN].tolist() == [0, 1, 1]
    assert int(table.loc["d2"].drop(MISSING_COLUMN).sum()) == 0
    assert int(table.loc["d3"].drop(MISSING_COLUMN).sum()) == 0
    assert not table.isna().any().any()
    assert (table.dtypes == np.uint8).all()

    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(messages) == 2
    assert "'d2'" in messages[0]
    assert BAD_VALENCE in messages[0]
    assert "Explicit valence for atom # 0 C, 5" in messages[0]
    assert "'d3'" in messages[1]
    assert "invalid SMILES syntax" in messages[1]


def test_missing_and_empty_smiles_are_flagged():
    smiles = pd.Series(["", None, np.nan, "  ", "C"], index=list("abcde"), dtype=object)
    table = morgan_fingerprints(smiles, n_bits=32)
    assert table[MISSING_COLUMN].tolist() == [1, 1, 1, 1, 0]


def test_rdkit_parse_errors_stay_off_stderr(capfd):
    morgan_fingerprints(pd.Series({"d1": "C1CC", "d2": BAD_VALENCE}), n_bits=16)
    assert capfd.readouterr().err == ""


def test_featurize_smiles_equals_batch_row():
    smiles = pd.Series({"a": "CCO", "b": "c1ccccc1O", "c": "CC(=O)Oc1ccccc1C(=O)O"})
    table = morgan_fingerprints(smiles, radius=3, n_bits=512)
    for entity, text in smiles.items():
        single = featurize_smiles(text, radius=3, n_bits=512)
        np.testing.assert_array_equal(single, table.loc[entity].to_numpy()[:-1])


@pytest.mark.parametrize(
    ("smiles", "message"),
    [
        ("", "could not parse SMILES '': empty SMILES"),
        ("C1CC", "could not parse SMILES 'C1CC': invalid SMILES syntax"),
        (BAD_VALENCE, f"could not parse SMILES '{BAD_VALENCE}': Explicit valence for atom # 0 C, 5"),
    ],
)
def test_featurize_smiles_rejects_invalid(smiles, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        featurize_smiles(smiles)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"radius": -1}, "radius must be a non-negative integer, got -1"),
        ({"radius": 1.5}, "radius must be a non-negative integer, got 1.5"),
        ({"radius": True}, "radius must be a non-negative integer, got True"),
        ({"n_bits": 0}, "n_bits must be a positive integer, got 0"),
    ],
)
def test_fingerprint_settings_rejected(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        featurize_smiles("C", **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        morgan_fingerprints(pd.Series({"a": "C"}), **kwargs)


def test_fingerprint_input_checked():
    with pytest.raises(ValueError, match=re.escape("smiles: the entity id 'a' appears more than once, but ids must be unique")):
        morgan_fingerprints(pd.Series(["C", "CC"], index=["a", "a"]))
    with pytest.raises(TypeError, match="smiles must be a pandas Series indexed by entity id, got list"):
        morgan_fingerprints(["C"])


def test_fingerprint_cache_hit_skips_rdkit(tmp_path, monkeypatch, caplog):
    smiles = pd.Series({"d1": "CCO", "d2": BAD_VALENCE})
    first = morgan_fingerprints(smiles, n_bits=128, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("RDKit was called although the cache should have been used")

    monkeypatch.setattr(fingerprints, "_parse_smiles", fail)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hybridmf.data.fingerprints"):
        second = morgan_fingerprints(smiles, n_bits=128, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(first, second)
    # The warning about the unparseable SMILES is repeated from the cached reason.
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "'d2'" in warnings[0]
    assert "Explicit valence" in warnings[0]


def test_fingerprint_cache_keyed_by_settings_and_smiles(tmp_path):
    morgan_fingerprints(pd.Series({"d1": "CCO"}), n_bits=64, cache_dir=tmp_path)
    morgan_fingerprints(pd.Series({"d1": "CCO"}), n_bits=32, cache_dir=tmp_path)
    morgan_fingerprints(pd.Series({"d1": "CCO"}), radius=1, n_bits=64, cache_dir=tmp_path)
    morgan_fingerprints(pd.Series({"d1": "CCN"}), n_bits=64, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 4


def test_fingerprint_ids_not_part_of_cache_key(tmp_path):
    first = morgan_fingerprints(pd.Series({"d1": "CCO"}), n_bits=64, cache_dir=tmp_path)
    renamed = morgan_fingerprints(pd.Series({"x9": "CCO"}), n_bits=64, cache_dir=tmp_path)
    assert renamed.index.tolist() == ["x9"]
    np.testing.assert_array_equal(first.to_numpy(), renamed.to_numpy())


@pytest.mark.parametrize("content", [b"", b"not a zip archive", b"PK\x03\x04 truncated"])
def test_corrupt_fingerprint_cache_rebuilt(tmp_path, caplog, content):
    smiles = pd.Series({"d1": "CCO", "d2": "c1ccccc1"})
    expected = morgan_fingerprints(smiles, n_bits=64, cache_dir=tmp_path)
    (cache_file,) = tmp_path.glob("*.npz")
    cache_file.write_bytes(content)

    with caplog.at_level(logging.WARNING, logger="hybridmf.data.fingerprints"):
        rebuilt = morgan_fingerprints(smiles, n_bits=64, cache_dir=tmp_path)
    pd.testing.assert_frame_equal(expected, rebuilt)
    assert any("ignoring the unreadable fingerprint cache" in record.getMessage() for record in caplog.records)
    with np.load(cache_file) as archive:
        assert archive["bits"].shape == (2, 8)


def test_tanimoto_similarity_exact():
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    b = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(tanimoto_similarity(a, b), [[1 / 3, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert tanimoto_similarity(np.array([1, 0, 1]), np.array([1, 0, 1])) == 1.0
    with pytest.raises(ValueError, match="a and b must have the same fingerprint length, got 4 and 3"):
        tanimoto_similarity(a, np.ones(3))


# ---------------------------------------------------------------------------------------
# MEF feature sources on a synthetic MEF directory
# ---------------------------------------------------------------------------------------

DRUG_IDS = ["-10", "-20", "-30"]
ADR_IDS = ["C0000001", "C0000002", "C0000003"]


def _matrix_text(values) -> str:
    return "".join("\t".join(f"{value:.3f}" for value in row) + "\n" for row in values)


def _symmetric(pairs: dict[tuple[int, int], float], size: int = 3) -> np.ndarray:
    matrix = np.eye(size)
    for (i, j), value in pairs.items():
        matrix[i, j] = matrix[j, i] = value
    return matrix


# Rows in drug.txt order: -10, -20, -30.
DRUG_ORDER_MATRIX = _symmetric({(0, 1): 0.12, (0, 2): 0.13, (1, 2): 0.23})
# Rows in drug-target.txt order: DB00030 (-30), DB00010 (-10), DB00020 (-20).
TARGET_ORDER_MATRIX = _symmetric({(0, 1): 0.31, (0, 2): 0.32, (1, 2): 0.12})
ADR_MATRIX = _symmetric({(0, 1): 0.5, (0, 2): 0.25, (1, 2): 0.75})


def _write(root, relative: str, text: str, newline: str = "\n") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))


@pytest.fixture
def mef_dir(tmp_path):
    root = tmp_path / "mef"
    _write(
        root,
        "data/drug.txt",
        '-10\tDB00010\t""\talpha\tCCO\n'
        '-20\tDB00020\t""\tbeta\tC(C)(C)(C)(C)C\n'
        '-30\tDB00030\tD00001\tgamma\tc1ccccc1\n',
    )
    _write(root, "data/adr.txt", "C0000001\trash\nC0000002\tnausea\nC0000003\tpain\n")
    node = "data/node-attribute/"
    # Keyed files deliberately list the drugs in another order than drug.txt.
    _write(root, node + "drug-atc.csv", "CID000000030,N06AA21\nCID000000010,N06AA09,A01AB02\n")
    _write(root, node + "drug-target.txt", "['DB00030', ['P3']]\n['DB00010', ['P1', 'P2']]\n['DB00020', ['']]\n")
    _write(root, node + "drug-pathway.txt", "DB00010, KEGG:1, REACT:2\nDB00020\nDB00030, KEGG:1\n")
    _write(root, node + "drug-disease.txt", "DB00030, 100, 100, 200\nDB00010, 200\nDB00020\n")
    _write(root, node + "drug-cmap-profile.txt", "1\t2\n0\t0\n3\t4.5\n")
    _write(
        root,
        node + "adr-protein.csv",
        "UMLS code of SE,all proteins\nC0000002,P1 P2@inh\nC0000009,P5\nC0000002,P3@act P1\nC0000001,P2\n",
        newline="\r\n",
    )
    for name in ("1-ECFP", "2-ATC", "6-Pathway", "7-Disease", "8-CMap"):
        _write(root, f"2-output-similarity/Drug/{name}.txt", _matrix_text(DRUG_ORDER_MATRIX))
    for name in ("3-ProSeq", "4-PPI", "5-ProGO"):
        _write(root, f"2-output-similarity/Drug/{name}.txt", _matrix_text(TARGET_ORDER_MATRIX))
    for name in ("1-UMLSLin", "2-UMLSJCN", "3-Coexist", "4-MedDRA", "5-APro"):
        _write(root, f"2-output-similarity/ADR/{name}.txt", _matrix_text(ADR_MATRIX))
    return root


def test_mef_drug_multi_hot_keyed_by_id(mef_dir):
    features = load_mef_features(mef_dir, "drug", ["atc", "target", "pathway", "disease"])
    assert list(features) == ["atc", "target", "pathway", "disease"]
    for table in features.values():
        assert table.index.tolist() == DRUG_IDS

    atc = features["atc"]
    assert atc.columns.tolist() == [
        "A", "A01", "A01A", "A01AB", "A01AB02", "N", "N06", "N06A", "N06AA", "N06AA09", "N06AA21",
    ]  # fmt: skip
    assert atc.loc["-10"].tolist() == [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert atc.loc["-20"].tolist() == [0] * 11
    assert atc.loc["-30"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1]

    assert features["target"].to_dict("index") == {
        "-10": {"P1": 1, "P2": 1, "P3": 0},
        "-20": {"P1": 0, "P2": 0, "P3": 0},
        "-30": {"P1": 0, "P2": 0, "P3": 1},
    }
    assert features["pathway"].to_dict("index") == {
        "-10": {"KEGG:1": 1, "REACT:2": 1},
        "-20": {"KEGG:1": 0, "REACT:2": 0},
        "-30": {"KEGG:1": 1, "REACT:2": 0},
    }
    assert features["disease"].to_dict("index") == {
        "-10": {"100": 0, "200": 1},
        "-20": {"100": 0, "200": 0},
        "-30": {"100": 1, "200": 1},
    }


def test_mef_fingerprint_and_cmap(mef_dir, tmp_path):
    features = load_mef_features(
        mef_dir, "drug", ["fingerprints", "cmap"], fingerprint_radius=0, fingerprint_bits=64,
        cache_dir=tmp_path / "cache",
    )  # fmt: skip
    fingerprint = features["fingerprint"]
    assert fingerprint.shape == (3, 65)
    assert fingerprint[MISSING_COLUMN].tolist() == [0, 1, 0]
    np.testing.assert_array_equal(
        fingerprint.loc["-30"].to_numpy()[:-1], featurize_smiles("c1ccccc1", radius=0, n_bits=64)
    )
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    cmap = features["cmap"]
    assert cmap.columns.tolist() == ["cmap_0", "cmap_1", "cmap_missing"]
    assert cmap.to_numpy().tolist() == [[1.0, 2.0, 0.0], [0.0, 0.0, 1.0], [3.0, 4.5, 0.0]]


def test_mef_drug_similarity_permuted_by_file_order(mef_dir):
    features = load_mef_features(mef_dir, "drug", ["drug_similarity"])
    assert list(features) == [name for name in DRUG_SOURCES if name.startswith("sim_")]
    ecfp = features["sim_ecfp"]
    assert ecfp.index.tolist() == DRUG_IDS
    assert ecfp.columns.tolist() == DRUG_IDS
    np.testing.assert_allclose(ecfp.to_numpy(), DRUG_ORDER_MATRIX, atol=1e-6)

    # The target-ordered file lists -30, -10, -20: rows and columns move together.
    proseq = features["sim_proseq"]
    assert proseq.index.tolist() == DRUG_IDS
    assert proseq.columns.tolist() == DRUG_IDS
    expected = np.array([[1.0, 0.12, 0.31], [0.12, 1.0, 0.32], [0.31, 0.32, 1.0]])
    for name in ("sim_proseq", "sim_ppi", "sim_progo"):
        np.testing.assert_allclose(features[name].to_numpy(), expected, atol=1e-6)
    assert proseq.loc["-30", "-10"] == pytest.approx(0.31)


def test_mef_adr_sources(mef_dir, caplog):
    with caplog.at_level(logging.INFO, logger="hybridmf.data.features"):
        features = load_mef_features(mef_dir, "adr", ["adr"])
    assert list(features) == list(FEATURE_PRESETS["adr"])
    proteins = features["adr_protein"]
    assert proteins.index.tolist() == ADR_IDS
    assert proteins.to_dict("index") == {
        "C0000001": {"P1": 0, "P2": 1, "P3": 0},
        "C0000002": {"P1": 1, "P2": 1, "P3": 1},
        "C0000003": {"P1": 0, "P2": 0, "P3": 0},
    }
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "ignored 1 ADR(s) not listed in adr.txt, e.g. C0000009" in messages
    assert "1 of 3 entities have no tokens" in messages

    apro = features["sim_apro"]
    np.testing.assert_allclose(apro.to_numpy(), [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(features["sim_meddra"].to_numpy(), ADR_MATRIX, atol=1e-6)
    assert features["sim_umls_lin"].columns.tolist() == ADR_IDS


def test_mef_coexist_rejected_without_opt_in(mef_dir):
    with pytest.raises(ValueError, match="'sim_coexist' is computed from the drug-ADR associations"):
        load_mef_features(mef_dir, "adr", ["sim_coexist"])


def test_mef_coexist_allowed_with_warning(mef_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="hybridmf.data.features"):
        features = load_mef_features(mef_dir, "adr", ["sim_coexist"], allow_label_leak=True)
    np.testing.assert_allclose(features["sim_coexist"].to_numpy(), ADR_MATRIX, atol=1e-6)
    assert any("leaks the labels" in record.getMessage() for record in caplog.records)


def test_presets_and_registry_consistent():
    assert "sim_coexist" not in FEATURE_PRESETS["adr"]
    for preset, members in FEATURE_PRESETS.items():
        sides = {"drug" if member in DRUG_SOURCES else "adr" for member in members}
        assert len(sides) == 1, preset
        assert all(member in DRUG_SOURCES or member in ADR_SOURCES for member in members)
    assert not set(DRUG_SOURCES) & set(ADR_SOURCES)
    assert expand_feature_names("drug", "drug") == ["fingerprint", "atc", "target", "pathway", "disease"]


@pytest.mark.parametrize(
    ("names", "side", "message"),
    [
        (["atc"], "drugs", "side must be 'drug' or 'adr', got 'drugs'"),
        (["ecfp"], "drug", "unknown feature source 'ecfp' for side='drug', expected one of"),
        (["adr_protein"], "drug", "feature source 'adr_protein' belongs to side='adr', not side='drug'. The drug sources are"),
        (["drug"], "adr", "feature source 'fingerprint' (from the preset 'drug') belongs to side='drug', not side='adr'"),
    ],
)
def test_feature_names_rejected(names, side, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        expand_feature_names(names, side)


@pytest.mark.parametrize(
    ("relative", "content", "names", "message"),
    [
        (
            "data/node-attribute/drug-target.txt",
            "['DB00030', ['P3']]\n__import__('os').getcwd()\n",
            ["target"],
            "drug-target.txt, line 2: expected a list like ['DB00330', ['P0A560']], could not parse",
        ),
        (
            "data/node-attribute/drug-target.txt",
            "['DB00030', 'P3']\n",
            ["target"],
            "drug-target.txt, line 1: expected [DrugBank id, [target ids]] of strings",
        ),
        (
            "data/node-attribute/drug-target.txt",
            "['DB00030', ['P3']]\n['DB00030', ['P4']]\n",
            ["target"],
            "drug-target.txt, line 2: the key 'DB00030' appears again (first on line 1)",
        ),
        (
            "data/node-attribute/drug-atc.csv",
            "CID000000010,N6AA21\n",
            ["atc"],
            "drug-atc.csv, line 1: invalid ATC code 'N6AA21', expected 7 characters like 'N06AA21'",
        ),
        (
            "data/node-attribute/drug-atc.csv",
            "DB00010,N06AA21\n",
            ["atc"],
            "drug-atc.csv, line 1: expected a PubChem key like 'CID000003015' as the first field, found 'DB00010'",
        ),
        (
            "data/node-attribute/drug-pathway.txt",
            "\n\n",
            ["pathway"],
            "drug-pathway.txt: the file is empty",
        ),
        (
            "2-output-similarity/Drug/1-ECFP.txt",
            "1\t0.5\n0.5\t1\n",
            ["sim_ecfp"],
            "1-ECFP.txt: expected a 3 x 3 matrix in the order of drug.txt, found 2 x 2",
        ),
        (
            "2-output-similarity/Drug/2-ATC.txt",
            "1\t0\t0\n0\tx\t0\n0\t0\t1\n",
            ["sim_atc"],
            "2-ATC.txt, line 2: column 1 has the non-numeric value 'x'",
        ),
        (
            "2-output-similarity/Drug/2-ATC.txt",
            "1\t0\t0\n0\t1\n0\t0\t1\n",
            ["sim_atc"],
            "2-ATC.txt, line 2: column 2 is missing or not finite",
        ),
        (
            "data/node-attribute/drug-target.txt",
            "['DB00030', ['P3']]\n['DB00010', ['P1']]\n['DB09999', ['P2']]\n",
            ["sim_proseq"],
            "3-ProSeq.txt: cannot align the rows, because drug-target.txt does not list every entity "
            "exactly once (1 missing, e.g. ['-20'])",
        ),
        (
            "data/node-attribute/drug-cmap-profile.txt",
            "1\t2\n3\t4\n",
            ["cmap"],
            "drug-cmap-profile.txt: expected one row per drug of drug.txt (3), found 2",
        ),
        (
            "data/drug.txt",
            '-10\tDB00010\t""\talpha\tCCO\n-20\tDB00010\t""\tbeta\tCC\n-30\tDB00030\t""\tgamma\tC\n',
            ["target"],
            "drug.txt, line 2: the DrugBank id 'DB00010' is given to the drugs '-10' and '-20', but",
        ),
    ],
)
def test_mef_malformed_files_rejected(mef_dir, relative, content, names, message):
    _write(mef_dir, relative, content)
    with pytest.raises(DataFormatError, match=re.escape(message)):
        load_mef_features(mef_dir, "drug", names)


def test_mef_non_utf8_file_rejected(mef_dir):
    (mef_dir / "data/node-attribute/drug-pathway.txt").write_bytes("DB00010, caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=re.escape("drug-pathway.txt: the file is not UTF-8 text")):
        load_mef_features(mef_dir, "drug", ["pathway"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("UMLS code of SE,all proteins\nC0000001,P1,P2\n", "adr-protein.csv, line 2: expected 2 comma-separated fields"),
        ("UMLS code of SE,all proteins\nC0000001,P1\n10001,P2\n", "adr-protein.csv, line 3: expected a UMLS CUI like 'C0033117', found '10001'"),
    ],
)
def test_mef_adr_protein_rejected(mef_dir, content, message):
    _write(mef_dir, "data/node-attribute/adr-protein.csv", content)
    with pytest.raises(DataFormatError, match=re.escape(message)):
        load_mef_features(mef_dir, "adr", ["adr_protein"])


def test_mef_unknown_keys_logged(mef_dir, caplog):
    _write(mef_dir, "data/node-attribute/drug-pathway.txt", "DB00010, KEGG:1\nDB09999, KEGG:2\n")
    with caplog.at_level(logging.INFO, logger="hybridmf.data.features"):
        table = load_mef_features(mef_dir, "drug", ["pathway"])["pathway"]
    assert table.to_dict("index") == {"-10": {"KEGG:1": 1}, "-20": {"KEGG:1": 0}, "-30": {"KEGG:1": 0}}
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "ignored 1 line(s) whose DrugBank id is not in drug.txt, e.g. DB09999" in messages
    assert "2 of 3 entities have no tokens" in messages


def test_multi_hot_exact():
    table = multi_hot(pd.Series({"x": ("t2", "t1"), "y": [], "z": np.nan}))
    assert table.columns.tolist() == ["t1", "t2"]
    assert table.to_numpy().tolist() == [[1, 1], [0, 0], [0, 0]]
    assert table.dtypes.tolist() == [np.uint8, np.uint8]


def test_multi_hot_rejects_plain_string():
    with pytest.raises(TypeError, match=re.escape("demo: the tokens of 'x' must be a list of tokens, got the string 'N06AA21'")):
        multi_hot(pd.Series({"x": "N06AA21"}), source="demo")


# ---------------------------------------------------------------------------------------
# Generic feature tables
# ---------------------------------------------------------------------------------------


def test_read_dense_csv(tmp_path):
    path = tmp_path / "features.csv"
    path.write_text("id,a,b\nd2,1.5,-2\nd1,0,3e2\n")
    table = read_feature_table(path)
    assert table.index.tolist() == ["d2", "d1"]
    assert table.index.name == "id"
    assert table.columns.tolist() == ["a", "b"]
    assert table.to_numpy().tolist() == [[1.5, -2.0], [0.0, 300.0]]


def test_read_tokens_tsv_with_space_separator(tmp_path):
    path = tmp_path / "features.tsv"
    path.write_text("drug\tnote\tatc\nd1\tx\tN06AA21 A01AB02\n\nd2\ty\t\n")
    table = read_feature_table(path, id_column="drug", tokens_column="atc", token_separator=" ")
    assert table.to_dict("index") == {
        "d1": {"A01AB02": 1, "N06AA21": 1},
        "d2": {"A01AB02": 0, "N06AA21": 0},
    }


def test_read_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "features.parquet"
    pd.DataFrame({"id": [7, 8], "x": [1.0, 2.0], "y": [1, 0]}).to_parquet(path)
    table = read_feature_table(path)
    assert table.index.tolist() == ["7", "8"]
    assert table.to_numpy().tolist() == [[1.0, 1.0], [2.0, 0.0]]


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "message"),
    [
        ("empty.csv", "", {}, "empty.csv: the file is empty, expected a header line with the id column"),
        ("header.csv", "id,a\n", {}, "header.csv: no data rows below the header line"),
        ("noid.csv", "drug,a\nd1,1\n", {}, "noid.csv: no id column 'id' among the columns ['drug', 'a']. Pass id_column="),
        ("dup.csv", "id,a\nd1,1\nd2,2\nd1,3\n", {}, "dup.csv, line 4: the id 'd1' appears again (first on line 2), but ids must be unique"),
        ("blankid.csv", "id,a\nd1,1\n,2\n", {}, "blankid.csv, line 3: the id column 'id' is empty"),
        ("text.csv", "id,a,b\nd1,1,2\nd2,3,abc\n", {}, "text.csv, line 3: column 'b' has the non-numeric value 'abc'"),
        ("nan.csv", "id,a\nd1,1\nd2,\n", {}, "nan.csv, line 3: column 'a' is missing or not finite"),
        ("nan2.csv", "id,a\nd1,NaN\n", {}, "nan2.csv, line 2: column 'a' is missing or not finite"),
        ("only_id.csv", "id\nd1\n", {}, "only_id.csv: no feature columns besides the id column 'id'"),
        ("tok.csv", "id,a\nd1,x\n", {"tokens_column": "t"}, "tok.csv: no tokens column 't' among the columns ['id', 'a']"),
        ("ragged.csv", "id,a\nd1,1,2,3\n", {}, "ragged.csv: not a rectangular table, because a line has more"),
        ("latin.csv", "id,a\nd\xe9,1\n".encode("latin-1"), {}, "latin.csv: the file is not UTF-8 text"),
    ],
)
def test_read_feature_table_rejects(tmp_path, name, content, kwargs, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(DataFormatError, match=re.escape(message)):
        read_feature_table(path, **kwargs)


def test_read_feature_table_rejects_suffix(tmp_path):
    path = tmp_path / "features.xlsx"
    path.write_text("id,a\n")
    with pytest.raises(ValueError, match=re.escape("unsupported suffix '.xlsx'")):
        read_feature_table(path)


def test_align_features_orders_and_ignores_extra(caplog):
    table = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}, index=["c", "a", "extra"])
    with caplog.at_level(logging.INFO, logger="hybridmf.data.features"):
        values, mask = align_features(table, pd.Index(["a", "c"]), "demo")
    assert values.dtype == np.float32
    assert values.tolist() == [[2.0, 1.0], [1.0, 0.0]]
    assert mask.tolist() == [False, False]
    assert any("demo: ignored 1 row(s) whose id is not in the entity list" in r.getMessage() for r in caplog.records)


def test_align_features_zero_fills_missing(caplog):
    table = pd.DataFrame({"x": [5.0]}, index=[10])
    with caplog.at_level(logging.WARNING, logger="hybridmf.data.features"):
        values, mask = align_features(table, ["9", "10", "11"], "demo", missing="zero")
    assert values.tolist() == [[0.0], [5.0], [0.0]]
    assert mask.tolist() == [True, False, True]
    assert any("demo: 2 of 3 ids have no feature row" in r.getMessage() for r in caplog.records)


def test_align_features_checks_only_used_rows():
    table = pd.DataFrame({"x": [1.0, np.nan]}, index=["a", "unused"])
    values, _ = align_features(table, ["a"], "demo")
    assert values.tolist() == [[1.0]]


@pytest.mark.parametrize(
    ("table", "ids", "kwargs", "error", "message"),
    [
        (
            pd.DataFrame({"x": [1.0]}, index=["a"]),
            ["a", "b", "c"],
            {},
            DataFormatError,
            "demo: 2 of 3 ids have no feature row, e.g. ['b', 'c']. Add their rows or pass missing='zero'",
        ),
        (
            pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=["a", "b", "a"]),
            ["a", "b"],
            {},
            DataFormatError,
            "demo: the id 'a' has 2 rows (1 repeated id(s)), but ids must be unique",
        ),
        (
            pd.DataFrame({"x": [1.0, np.nan]}, index=["a", "b"]),
            ["a", "b"],
            {},
            DataFormatError,
            "demo, id 'b': column 'x' is missing or not finite (value nan, 1 such value(s) in this column)",
        ),
        (
            pd.DataFrame({"x": [1.0, np.inf]}, index=["a", "b"]),
            ["a", "b"],
            {},
            DataFormatError,
            "demo, id 'b': column 'x' is missing or not finite (value inf,",
        ),
        (
            pd.DataFrame({"x": [1.0, 2.0], "y": ["0.5", "high"]}, index=["a", "b"]),
            ["a", "b"],
            {},
            DataFormatError,
            "demo, id 'b': column 'y' has the non-numeric value 'high' (1 non-numeric value(s) in this column)",
        ),
        (pd.DataFrame(index=["a"]), ["a"], {}, DataFormatError, "demo: the feature table has no columns"),
        (
            pd.DataFrame({"x": [1.0]}, index=["a"]),
            ["a"],
            {"missing": "drop"},
            ValueError,
            "missing must be 'error' or 'zero', got 'drop'",
        ),
        (
            pd.DataFrame({"x": [1.0]}, index=["a"]),
            ["a", "a"],
            {},
            ValueError,
            "ids: the id 'a' appears more than once, but ids must be unique",
        ),
    ],
)
def test_align_features_rejects(table, ids, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        align_features(table, ids, "demo", **kwargs)


# ---------------------------------------------------------------------------------------
# Scaling
# ---------------------------------------------------------------------------------------


def test_scaler_fits_on_selected_rows_only():
    values = np.array([[1.0, 0.0, 7.0], [3.0, 1.0, 7.0], [1000.0, 1.0, 9.0]])
    scaler = FeatureScaler().fit(values, rows=[0, 1])
    np.testing.assert_allclose(scaler.mean_, [2.0, 0.0, 7.0])
    np.testing.assert_allclose(scaler.scale_, [1.0, 1.0, 1.0])
    scaled = scaler.transform(values)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [[-1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [998.0, 1.0, 2.0]])


def test_scaler_skips_and_zeroes_missing_rows():
    values = np.array([[2.0], [4.0], [0.0], [6.0]])
    missing = np.array([False, False, True, False])
    scaler = FeatureScaler().fit(values, rows=[0, 1, 2], missing=missing)
    np.testing.assert_allclose(scaler.mean_, [3.0])
    np.testing.assert_allclose(scaler.transform(values, missing=missing), [[-1.0], [1.0], [0.0], [3.0]])


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda: FeatureScaler().transform(np.ones((2, 2))), "FeatureScaler is not fitted"),
        (lambda: FeatureScaler().fit(np.ones(3)), "values must be a 2-D (N, d) array, got shape (3,)"),
        (lambda: FeatureScaler().fit(np.ones((2, 2)), rows=[]), "no rows to fit on"),
        (
            lambda: FeatureScaler().fit(np.ones((2, 2))).transform(np.ones((2, 3))),
            "values must have 2 columns as in fit(), got 3",
        ),
        (
            lambda: FeatureScaler().fit(np.ones((2, 2)), missing=np.zeros(3, dtype=bool)),
            "missing must have shape (2,), got (3,)",
        ),
    ],
)
def test_scaler_rejects(action, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        action()

"""Integration tests of the MEF side features on the real files, including their row orders.

The order checks compare each published similarity matrix with a similarity recomputed
from the raw attributes, once in the alignment used by ``load_mef_features`` and once in
the other file order, so a wrong permutation makes them fail.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hybridmf.data.features import DRUG_SOURCES, FEATURE_PRESETS, load_mef_features, multi_hot
from hybridmf.data.fingerprints import MISSING_COLUMN, tanimoto_similarity
from hybridmf.data.mef import DATA_DIR_ENV, load_mef

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[1]
MEF_DIR = Path(os.environ.get(DATA_DIR_ENV) or REPOSITORY.parent / "shared" / "data" / "mef")

if not (MEF_DIR / "data" / "drug.txt").is_file():
    pytest.skip(
        f"MEF data not found at {MEF_DIR}; set {DATA_DIR_ENV} to a copy of github.com/nanxstats/MEF",
        allow_module_level=True,
    )

N_DRUGS = 746
N_ADRS = 817


@pytest.fixture(scope="module")
def mef():
    return load_mef(MEF_DIR)


@pytest.fixture(scope="module")
def drug_features(tmp_path_factory):
    cache = tmp_path_factory.mktemp("fingerprints")
    return load_mef_features(MEF_DIR, "drug", list(DRUG_SOURCES), cache_dir=cache)


@pytest.fixture(scope="module")
def adr_features():
    return load_mef_features(MEF_DIR, "adr", ["adr", "sim_coexist"], allow_label_leak=True)


@pytest.fixture(scope="module")
def target_order(mef):
    """Positions in drug.txt of the drugs in the line order of drug-target.txt."""
    lines = (MEF_DIR / "data/node-attribute/drug-target.txt").read_text().splitlines()
    drugbank_ids = [re.match(r"\['(DB\d+)'", line).group(1) for line in lines]
    positions = pd.Index(mef.rows["drugbank_id"]).get_indexer(drugbank_ids)
    assert (positions >= 0).all()
    assert len(set(positions)) == N_DRUGS
    return positions


def _raw(relative: str) -> np.ndarray:
    return np.loadtxt(MEF_DIR / relative)


def _as_if_in_order(raw: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Key a file's rows as if row k belonged to the entity at ``positions[k]``."""
    keyed = np.empty_like(raw)
    keyed[np.ix_(positions, positions)] = raw
    return keyed


def _upper_correlation(a: np.ndarray, b: np.ndarray) -> float:
    rows, cols = np.triu_indices(len(a), k=1)
    return float(np.corrcoef(a[rows, cols], b[rows, cols])[0, 1])


def _max_off_diagonal_gap(a: np.ndarray, b: np.ndarray) -> float:
    gap = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    np.fill_diagonal(gap, 0.0)
    return float(gap.max())


def test_drug_feature_shapes(drug_features, mef):
    widths = {
        "fingerprint": 2049,
        "atc": 1762,
        "target": 1581,
        "pathway": 318,
        "disease": 1877,
        "cmap": 501,
    }
    for name, table in drug_features.items():
        assert table.index.tolist() == mef.row_ids.tolist(), name
        assert table.shape == (N_DRUGS, widths.get(name, N_DRUGS)), name
        assert not table.isna().any().any(), name
        if name.startswith("sim_"):
            assert table.columns.tolist() == mef.row_ids.tolist(), name
            np.testing.assert_allclose(np.diag(table.to_numpy()), 1.0, err_msg=name)
            np.testing.assert_allclose(table.to_numpy(), table.to_numpy().T, err_msg=name)


def test_unparseable_smiles_are_the_cobalamins(drug_features, mef):
    fingerprint = drug_features["fingerprint"]
    failed = fingerprint.index[fingerprint[MISSING_COLUMN] == 1].tolist()
    assert failed == ["-2891", "-4479097"]
    names = mef.rows.set_index("id").loc[failed, "name"].str.lower().tolist()
    assert names == ["cyanocobalamin", "hydroxocobalamin"]
    assert int(fingerprint.loc[failed].drop(columns=MISSING_COLUMN).to_numpy().sum()) == 0


def test_multi_hot_coverage(drug_features):
    empty_rows = {name: int((drug_features[name].to_numpy().sum(axis=1) == 0).sum()) for name in ("atc", "target", "pathway", "disease")}
    assert empty_rows == {"atc": 0, "target": 53, "pathway": 187, "disease": 182}
    assert int(drug_features["cmap"]["cmap_missing"].sum()) == 403


def test_ecfp_follows_drug_order(drug_features, target_order):
    bits = drug_features["fingerprint"].drop(columns=MISSING_COLUMN).to_numpy()
    tanimoto = tanimoto_similarity(bits, bits)
    raw = _raw("2-output-similarity/Drug/1-ECFP.txt")

    np.testing.assert_allclose(drug_features["sim_ecfp"].to_numpy(), raw, atol=1e-6)
    assert _upper_correlation(drug_features["sim_ecfp"].to_numpy(), tanimoto) > 0.8
    assert abs(_upper_correlation(_as_if_in_order(raw, target_order), tanimoto)) < 0.1


def test_atc_similarity_follows_drug_order(drug_features, target_order):
    atc = drug_features["atc"].to_numpy()
    jaccard = tanimoto_similarity(atc, atc)
    raw = _raw("2-output-similarity/Drug/2-ATC.txt")

    assert _upper_correlation(drug_features["sim_atc"].to_numpy(), jaccard) > 0.8
    assert abs(_upper_correlation(_as_if_in_order(raw, target_order), jaccard)) < 0.1


@pytest.mark.parametrize(
    ("name", "relative", "min_aligned"),
    [
        ("sim_proseq", "2-output-similarity/Drug/3-ProSeq.txt", 0.4),
        ("sim_ppi", "2-output-similarity/Drug/4-PPI.txt", 0.05),
        ("sim_progo", "2-output-similarity/Drug/5-ProGO.txt", 0.05),
    ],
)
def test_target_similarities_follow_target_order(drug_features, name, relative, min_aligned):
    """Measured correlations with the target Jaccard: 0.54, 0.09 and 0.11 aligned; |r| < 0.01 in drug.txt order."""
    targets = drug_features["target"].to_numpy()
    jaccard = tanimoto_similarity(targets, targets)
    raw_in_drug_order = _raw(relative)

    assert _upper_correlation(drug_features[name].to_numpy(), jaccard) > min_aligned
    assert abs(_upper_correlation(raw_in_drug_order, jaccard)) < 0.02


def test_pathway_similarity_is_pathway_jaccard(drug_features):
    pathways = drug_features["pathway"].to_numpy()
    jaccard = tanimoto_similarity(pathways, pathways)
    # The file has 3 decimals, so rounding alone leaves a gap of up to 5e-4.
    assert _max_off_diagonal_gap(drug_features["sim_pathway"].to_numpy(), jaccard) < 6e-4


def test_disease_similarity_follows_drug_order(drug_features, target_order):
    diseases = drug_features["disease"].to_numpy()
    jaccard = tanimoto_similarity(diseases, diseases)
    raw = _raw("2-output-similarity/Drug/7-Disease.txt")

    assert _upper_correlation(drug_features["sim_disease"].to_numpy(), jaccard) > 0.4
    assert abs(_upper_correlation(_as_if_in_order(raw, target_order), jaccard)) < 0.1


def test_cmap_similarity_is_profile_cosine(drug_features):
    profile = drug_features["cmap"].drop(columns="cmap_missing").to_numpy().astype(np.float64)
    norms = np.linalg.norm(profile, axis=1)
    unit = profile / np.where(norms > 0, norms, 1.0)[:, None]  # (n_drugs, n_probes)
    cosine = unit @ unit.T  # (n_drugs, n_drugs)
    assert _max_off_diagonal_gap(drug_features["sim_cmap"].to_numpy(), cosine) < 6e-4


def test_cmap_profiles_of_known_cmap_compounds(drug_features, mef):
    """Well-known CMap build 02 compounds must have a profile; 343 of 746 drugs have one."""
    compounds = [
        "haloperidol", "clozapine", "chlorpromazine", "tamoxifen", "dexamethasone", "metformin",
        "sirolimus", "rosiglitazone", "troglitazone", "thioridazine", "fluphenazine",
        "trifluoperazine", "prochlorperazine", "perphenazine", "raloxifene", "estradiol",
        "prednisolone", "verapamil", "lovastatin", "simvastatin", "fluvastatin", "imatinib",
        "methotrexate", "captopril", "nifedipine", "amitriptyline", "imipramine",
    ]  # fmt: skip
    names = pd.Series(mef.rows["name"].str.lower().to_numpy(), index=mef.row_ids)
    has_profile = drug_features["cmap"]["cmap_missing"] == 0
    found = [name for name in compounds if (names == name).any()]
    with_profile = [name for name in found if has_profile[names.index[names == name][0]]]
    assert len(found) == len(compounds)
    assert len(with_profile) == len(compounds)


def test_coexist_rejected_without_opt_in():
    with pytest.raises(ValueError, match="is computed from the drug-ADR associations themselves"):
        load_mef_features(MEF_DIR, "adr", ["sim_coexist"])


def test_coexist_recomputed_from_associations(adr_features, mef):
    labels = np.zeros((mef.n_rows, mef.n_cols))
    labels[mef.pairs[:, 0], mef.pairs[:, 1]] = 1.0
    # The fraction of drugs with ADR i that also have ADR j, then cosine of those rows.
    conditional = (labels.T @ labels) / labels.sum(axis=0)[:, None]  # (n_adrs, n_adrs)
    gram = conditional @ conditional.T  # (n_adrs, n_adrs)
    norms = np.sqrt(np.diag(gram))
    expected = gram / norms[:, None] / norms[None, :]
    assert _max_off_diagonal_gap(adr_features["sim_coexist"].to_numpy(), expected) < 6e-4


def test_adr_feature_shapes(adr_features, mef):
    assert list(adr_features) == list(FEATURE_PRESETS["adr"]) + ["sim_coexist"]
    for name, table in adr_features.items():
        assert table.index.tolist() == mef.col_ids.tolist(), name
        assert not table.isna().any().any(), name
    assert adr_features["adr_protein"].shape == (N_ADRS, 144)
    assert int((adr_features["adr_protein"].to_numpy().sum(axis=1) == 0).sum()) == 440
    for name in ("sim_umls_lin", "sim_umls_jcn", "sim_meddra", "sim_apro", "sim_coexist"):
        assert adr_features[name].shape == (N_ADRS, N_ADRS), name
        assert adr_features[name].columns.tolist() == mef.col_ids.tolist(), name


@pytest.mark.parametrize("name", ["sim_umls_lin", "sim_umls_jcn", "sim_meddra"])
def test_adr_semantic_similarities_follow_adr_order(adr_features, mef, name):
    """Correlation with the word overlap of ADR names: 0.08 to 0.14 aligned, 0.000 +- 0.003 shuffled."""
    words = mef.cols["name"].str.lower().str.findall(r"[a-z]+")
    words = words.map(lambda tokens: [token for token in tokens if token not in {"of", "and", "the", "in"}])
    names = multi_hot(pd.Series(words.to_numpy(), index=mef.col_ids)).to_numpy()
    overlap = tanimoto_similarity(names, names)
    shuffled = np.random.default_rng(0).permutation(N_ADRS)
    similarity = adr_features[name].to_numpy()

    assert _upper_correlation(similarity, overlap) > 0.05
    assert abs(_upper_correlation(similarity[np.ix_(shuffled, shuffled)], overlap)) < 0.02


def test_sim_apro_recomputed_by_adr_id(adr_features):
    proteins = adr_features["adr_protein"].to_numpy()
    expected = tanimoto_similarity(proteins, proteins)
    np.testing.assert_allclose(np.diag(adr_features["sim_apro"].to_numpy()), 1.0)
    assert _max_off_diagonal_gap(adr_features["sim_apro"].to_numpy(), expected) < 1e-6


def test_published_apro_is_misaligned(adr_features, mef):
    """5-APro.txt pairs ADR i of adr.txt with the i-th ADR of adr-protein.csv sorted by code."""
    table = pd.read_csv(MEF_DIR / "data/node-attribute/adr-protein.csv")
    table.columns = ["adr", "proteins"]
    table["proteins"] = table["proteins"].str.replace(r"@(inh|act)", "", regex=True).str.split()
    by_code = table.groupby("adr")["proteins"].sum().sort_index()  # lists concatenated per ADR
    sorted_sets = multi_hot(by_code.map(lambda proteins: list(dict.fromkeys(proteins)))).to_numpy()
    has_proteins = mef.col_ids.isin(by_code.index)
    # Upstream indexing: entry (i, j) uses the i-th and j-th sorted ADRs, kept where ADRs i
    # and j of adr.txt have proteins.
    shifted = tanimoto_similarity(sorted_sets[:N_ADRS], sorted_sets[:N_ADRS])
    shifted = shifted * np.outer(has_proteins, has_proteins)
    published = _raw("2-output-similarity/ADR/5-APro.txt")

    assert _max_off_diagonal_gap(published, shifted) < 6e-4
    assert _max_off_diagonal_gap(published, adr_features["sim_apro"].to_numpy()) > 0.5

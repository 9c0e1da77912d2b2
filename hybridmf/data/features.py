"""Side features of drugs and ADRs, keyed by entity id: MEF sources, feature tables, scaling.

Every feature table is a data frame indexed by the entity id of ``data/drug.txt`` (the
negative PubChem CID, e.g. ``-3015``) or ``data/adr.txt`` (the UMLS CUI), in the order of
that file. Nothing is keyed by row position, because the MEF files list drugs in two
different orders.

File orders in MEF, measured on the files of ``mef.MEF_COMMIT`` and checked by
``tests/test_mef_features.py``:

- ``drug-atc.csv`` (key ``CID000003015`` = drug ``-3015``), ``drug-pathway.txt``,
  ``drug-disease.txt`` and ``drug-cmap-profile.txt`` list the drugs in the order of
  ``drug.txt``. ``drug-target.txt`` lists the same DrugBank ids in a different order.
- The drug similarity matrices ``1-ECFP``, ``2-ATC``, ``6-Pathway``, ``7-Disease`` and
  ``8-CMap`` follow ``drug.txt``. For example, ``1-ECFP`` correlates at 0.85 with the
  Tanimoto similarity of RDKit Morgan fingerprints of the SMILES in that order, and at
  0.01 in the ``drug-target.txt`` order. ``6-Pathway`` equals the Jaccard similarity of
  the pathway sets, and ``8-CMap`` the cosine similarity of the CMap profile rows, both up
  to rounding.
- ``3-ProSeq``, ``4-PPI`` and ``5-ProGO`` follow ``drug-target.txt``. Their correlation
  with the Jaccard similarity of the target sets is 0.54, 0.09 and 0.11 in that order and
  about 0 in the ``drug.txt`` order. Rows and columns are permuted together by DrugBank id.
- The CMap profile has a row of zeros for the 403 drugs without a CMap signature. The
  order of its rows is confirmed by well-known CMap compounds (haloperidol, tamoxifen,
  estradiol and others), which have non-zero rows in the ``drug.txt`` order only.
- The ADR matrices follow ``adr.txt``: ``3-Coexist`` equals the co-occurrence similarity
  recomputed from ``association.txt``, and ``1-UMLSLin``, ``2-UMLSJCN`` and ``4-MedDRA``
  correlate with the word overlap of the ADR names only in that order.
- The published ``5-APro.txt`` is not aligned with its ADRs. Its entry ``(i, j)`` is the
  Jaccard similarity of the i-th and j-th ADRs of ``adr-protein.csv`` sorted by UMLS code,
  kept only where ADRs i and j of ``adr.txt`` have proteins. So ``sim_apro`` is
  recomputed here from ``adr-protein.csv`` by ADR id instead.

``ADR/3-Coexist.txt`` is computed from the drug–ADR associations, so it leaks the labels
of any held-out pair into the features. ``load_mef_features`` rejects it unless
``allow_label_leak=True``.

Multi-hot and similarity features are 0/1 or in [0, 1] and are meant to be used unscaled.
The dense CMap profile (ranks) should be standardized with ``FeatureScaler`` fitted on the
training rows only. ``assemble_features`` does both when it concatenates the tables of one
side into the model's feature matrix, and ``featurize_new_rows`` builds the row features
of new molecules from their SMILES in the same layout.
"""

from __future__ import annotations

import ast
import functools
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hybridmf.data.errors import DataFormatError
from hybridmf.data.fingerprints import morgan_fingerprints
from hybridmf.data.io import read_fixed_columns
from hybridmf.data.mef import ADR_COLUMNS, DRUG_COLUMNS, MEFSource

logger = logging.getLogger(__name__)

# Feature sources of each side, by stable name, with what each contains.
DRUG_SOURCES: dict[str, str] = {
    "fingerprint": "Morgan fingerprint bits of the SMILES plus fingerprint_missing",
    "atc": "multi-hot ATC codes with their level 1-4 prefixes (drug-atc.csv)",
    "target": "multi-hot UniProt target ids (drug-target.txt)",
    "pathway": "multi-hot KEGG and Reactome pathways (drug-pathway.txt)",
    "disease": "multi-hot disease ids (drug-disease.txt)",
    "cmap": "CMap rank profile of 500 probes plus cmap_missing (drug-cmap-profile.txt)",
    "sim_ecfp": "similarity row, 2-output-similarity/Drug/1-ECFP.txt",
    "sim_atc": "similarity row, 2-output-similarity/Drug/2-ATC.txt",
    "sim_proseq": "similarity row, 2-output-similarity/Drug/3-ProSeq.txt",
    "sim_ppi": "similarity row, 2-output-similarity/Drug/4-PPI.txt",
    "sim_progo": "similarity row, 2-output-similarity/Drug/5-ProGO.txt",
    "sim_pathway": "similarity row, 2-output-similarity/Drug/6-Pathway.txt",
    "sim_disease": "similarity row, 2-output-similarity/Drug/7-Disease.txt",
    "sim_cmap": "similarity row, 2-output-similarity/Drug/8-CMap.txt",
}
ADR_SOURCES: dict[str, str] = {
    "adr_protein": "multi-hot proteins linked to the ADR (adr-protein.csv)",
    "sim_umls_lin": "similarity row, 2-output-similarity/ADR/1-UMLSLin.txt",
    "sim_umls_jcn": "similarity row, 2-output-similarity/ADR/2-UMLSJCN.txt",
    "sim_meddra": "similarity row, 2-output-similarity/ADR/4-MedDRA.txt",
    "sim_apro": "Jaccard similarity row of the adr_protein sets (recomputed, see module docstring)",
    "sim_coexist": "similarity row, 2-output-similarity/ADR/3-Coexist.txt, which leaks labels",
}
# Sources computed from the drug–ADR associations themselves.
LABEL_LEAK_SOURCES = frozenset({"sim_coexist"})

# Named groups of sources, e.g. for a command-line option. Each preset belongs to one side.
FEATURE_PRESETS: dict[str, tuple[str, ...]] = {
    "fingerprints": ("fingerprint",),
    # Sparse 0/1 drug features that need no scaling.
    "drug": ("fingerprint", "atc", "target", "pathway", "disease"),
    "drug_similarity": tuple(name for name in DRUG_SOURCES if name.startswith("sim_")),
    "adr": ("adr_protein", "sim_umls_lin", "sim_umls_jcn", "sim_meddra", "sim_apro"),
}

SIDES = ("drug", "adr")
# ATC levels used as tokens, by code length: N, N06, N06A, N06AA and N06AA21.
ATC_PREFIX_LENGTHS = (1, 3, 4, 5, 7)
CMAP_MISSING_COLUMN = "cmap_missing"

_DRUG_SIMILARITY_FILES = {
    # source name: (file, the order of its rows and columns)
    "sim_ecfp": ("2-output-similarity/Drug/1-ECFP.txt", "drug.txt"),
    "sim_atc": ("2-output-similarity/Drug/2-ATC.txt", "drug.txt"),
    "sim_proseq": ("2-output-similarity/Drug/3-ProSeq.txt", "drug-target.txt"),
    "sim_ppi": ("2-output-similarity/Drug/4-PPI.txt", "drug-target.txt"),
    "sim_progo": ("2-output-similarity/Drug/5-ProGO.txt", "drug-target.txt"),
    "sim_pathway": ("2-output-similarity/Drug/6-Pathway.txt", "drug.txt"),
    "sim_disease": ("2-output-similarity/Drug/7-Disease.txt", "drug.txt"),
    "sim_cmap": ("2-output-similarity/Drug/8-CMap.txt", "drug.txt"),
}
_ADR_SIMILARITY_FILES = {
    "sim_umls_lin": "2-output-similarity/ADR/1-UMLSLin.txt",
    "sim_umls_jcn": "2-output-similarity/ADR/2-UMLSJCN.txt",
    "sim_meddra": "2-output-similarity/ADR/4-MedDRA.txt",
    "sim_coexist": "2-output-similarity/ADR/3-Coexist.txt",
}
_ATC_FILE = "data/node-attribute/drug-atc.csv"
_TARGET_FILE = "data/node-attribute/drug-target.txt"
_PATHWAY_FILE = "data/node-attribute/drug-pathway.txt"
_DISEASE_FILE = "data/node-attribute/drug-disease.txt"
_CMAP_FILE = "data/node-attribute/drug-cmap-profile.txt"
_ADR_PROTEIN_FILE = "data/node-attribute/adr-protein.csv"

_ATC_CODE = re.compile(r"^[A-Z]\d\d[A-Z][A-Z]\d\d$")
_PUBCHEM_CID = re.compile(r"^CID(\d+)$")
_UMLS_CUI = re.compile(r"^C\d{7}$")
# Modes of action appended to gene symbols in adr-protein.csv, e.g. "ADRA1A@inh".
_PROTEIN_MODE = re.compile(r"@(inh|act)$")


def expand_feature_names(names: str | Sequence[str], side: str) -> list[str]:
    """Expand preset names into source names and check that every source fits ``side``.

    Args:
        names: Source names and preset names (see ``FEATURE_PRESETS``), or a single name.
        side: ``"drug"`` or ``"adr"``.

    Returns:
        The source names in the given order, each once.

    Raises:
        ValueError: When ``side`` is invalid, a name is unknown, or a source belongs to the
            other side.

    Example:
        >>> expand_feature_names(["fingerprints", "atc", "fingerprint"], "drug")
        ['fingerprint', 'atc']
    """
    if side not in SIDES:
        raise ValueError(f"side must be 'drug' or 'adr', got {side!r}")
    if isinstance(names, str):
        names = [names]
    sources = DRUG_SOURCES if side == "drug" else ADR_SOURCES
    other_side, other_sources = ("adr", ADR_SOURCES) if side == "drug" else ("drug", DRUG_SOURCES)
    expanded: list[str] = []
    for name in names:
        members = FEATURE_PRESETS.get(name, (name,))
        for member in members:
            origin = f" (from the preset {name!r})" if name in FEATURE_PRESETS else ""
            if member in other_sources:
                raise ValueError(
                    f"feature source {member!r}{origin} belongs to side={other_side!r}, not "
                    f"side={side!r}. The {side} sources are {sorted(sources)}"
                )
            if member not in sources:
                raise ValueError(
                    f"unknown feature source {member!r} for side={side!r}, expected one of "
                    f"{sorted(sources)} or a preset in {sorted(FEATURE_PRESETS)}"
                )
            if member not in expanded:
                expanded.append(member)
    return expanded


def load_mef_features(
    source: MEFSource | str | os.PathLike,
    side: str,
    names: str | Sequence[str],
    *,
    fingerprint_radius: int = 2,
    fingerprint_bits: int = 2048,
    cache_dir: str | os.PathLike | None = None,
    allow_label_leak: bool = False,
) -> dict[str, pd.DataFrame]:
    """Load MEF side features of drugs or ADRs, each indexed by entity id.

    The tables are indexed by the ids of ``data/drug.txt`` or ``data/adr.txt`` in file
    order. Similarity sources have one column per entity id, with rows and columns in the
    same order. Entities absent from a multi-hot file get a row of zeros, and their count
    is logged.

    Args:
        source: The MEF files, as an ``MEFSource`` or a local MEF directory.
        side: ``"drug"`` or ``"adr"``.
        names: Source names of ``DRUG_SOURCES`` or ``ADR_SOURCES``, or presets of
            ``FEATURE_PRESETS``.
        fingerprint_radius: Morgan radius of the ``fingerprint`` source.
        fingerprint_bits: Number of fingerprint bits.
        cache_dir: Directory of the fingerprint cache, or None for no caching.
        allow_label_leak: Allow sources computed from the associations (``sim_coexist``)
            and log a warning instead of raising.

    Returns:
        One data frame per expanded source name, in the order of ``names``.

    Raises:
        ValueError: When a name or the side is invalid, or a label-leaking source is
            requested without ``allow_label_leak``.
        DataFormatError: When a MEF file is malformed or cannot be aligned with the entity
            ids; the message names the file and line.
        DataNotFoundError: When a MEF file is missing.

    Example:
        >>> load_mef_features("unused", "adr", ["sim_coexist"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: feature source 'sim_coexist' is computed from the drug-ADR associations ...
    """
    names = expand_feature_names(names, side)
    leaking = [name for name in names if name in LABEL_LEAK_SOURCES]
    if leaking and not allow_label_leak:
        raise ValueError(
            f"feature source {leaking[0]!r} is computed from the drug-ADR associations "
            f"themselves, so it contains the labels of every held-out pair and inflates "
            f"evaluation results. Pass allow_label_leak=True only for an analysis that "
            f"does not evaluate on those associations"
        )
    for name in leaking:
        logger.warning(
            "feature source %r is computed from the drug-ADR associations and leaks the labels "
            "of held-out pairs into the features",
            name,
        )
    if not isinstance(source, MEFSource):
        source = MEFSource(source)

    files = _MEFFiles(source)
    features = {}
    for name in names:
        if side == "drug":
            table = files.drug_source(name, fingerprint_radius, fingerprint_bits, cache_dir)
        else:
            table = files.adr_source(name)
        logger.info(
            "feature source %s: %d %s x %d columns",
            name,
            table.shape[0],
            "drugs" if side == "drug" else "ADRs",
            table.shape[1],
        )
        features[name] = table
    return features


class _MEFFiles:
    """Parsed MEF files of one directory, each read once and shared between sources."""

    def __init__(self, source: MEFSource) -> None:
        self.source = source

    @functools.cached_property
    def drugs(self) -> pd.DataFrame:
        return _read_entities(self.source.path("data/drug.txt"), DRUG_COLUMNS, ("id", "name"))

    @functools.cached_property
    def adrs(self) -> pd.DataFrame:
        return _read_entities(self.source.path("data/adr.txt"), ADR_COLUMNS, ADR_COLUMNS)

    @functools.cached_property
    def drug_ids(self) -> pd.Index:
        return pd.Index(self.drugs["id"], name="id")

    @functools.cached_property
    def adr_ids(self) -> pd.Index:
        return pd.Index(self.adrs["id"], name="id")

    @functools.cached_property
    def drug_id_by_drugbank(self) -> dict[str, str]:
        """Map each DrugBank id of ``drug.txt`` to its drug id, checking that it is unique."""
        path = self.source.path("data/drug.txt")
        mapping: dict[str, str] = {}
        for drugbank_id, drug_id, line in zip(
            self.drugs["drugbank_id"], self.drugs["id"], self.drugs["line"]
        ):
            if drugbank_id == "":
                continue
            if drugbank_id in mapping:
                raise DataFormatError(
                    f"{path}, line {line}: the DrugBank id {drugbank_id!r} is given to the drugs "
                    f"{mapping[drugbank_id]!r} and {drug_id!r}, but DrugBank ids must be unique to "
                    f"align the files keyed by DrugBank id"
                )
            mapping[drugbank_id] = drug_id
        return mapping

    @functools.cached_property
    def targets(self) -> tuple[dict[str, list[str]], list[str]]:
        """Return the targets by drug id and the drug ids in the line order of drug-target.txt."""
        path = self.source.path(_TARGET_FILE)
        by_drugbank, order = _read_drug_targets(path)
        tokens = self._by_drug_id(by_drugbank, path, "DrugBank id")
        return tokens, [self.drug_id_by_drugbank.get(key, "") for key in order]

    @functools.cached_property
    def adr_proteins(self) -> dict[str, list[str]]:
        path = self.source.path(_ADR_PROTEIN_FILE)
        proteins = _read_adr_proteins(path)
        known = set(self.adr_ids)
        extra = [adr for adr in proteins if adr not in known]
        if extra:
            logger.info(
                "%s: ignored %d ADR(s) not listed in adr.txt, e.g. %s",
                path,
                len(extra),
                ", ".join(extra[:3]),
            )
        return {adr: proteins.get(adr, []) for adr in self.adr_ids}

    def drug_source(
        self, name: str, radius: int, n_bits: int, cache_dir: str | os.PathLike | None
    ) -> pd.DataFrame:
        if name == "fingerprint":
            smiles = pd.Series(self.drugs["smiles"].to_numpy(), index=self.drug_ids)
            return morgan_fingerprints(smiles, radius=radius, n_bits=n_bits, cache_dir=cache_dir)
        if name == "atc":
            path = self.source.path(_ATC_FILE)
            atc = _read_drug_atc(path)
            tokens = self._by_drug_id(atc, path, "PubChem CID", key_of=_cid_to_drug_id)
            return multi_hot(pd.Series(tokens).reindex(self.drug_ids), source=str(path))
        if name == "target":
            tokens, _ = self.targets
            path = self.source.path(_TARGET_FILE)
            return multi_hot(pd.Series(tokens).reindex(self.drug_ids), source=str(path))
        if name in ("pathway", "disease"):
            path = self.source.path(_PATHWAY_FILE if name == "pathway" else _DISEASE_FILE)
            tokens = self._by_drug_id(_read_keyed_token_lines(path), path, "DrugBank id")
            return multi_hot(pd.Series(tokens).reindex(self.drug_ids), source=str(path))
        if name == "cmap":
            return self._cmap()
        relative, order = _DRUG_SIMILARITY_FILES[name]
        file_ids = list(self.drug_ids) if order == "drug.txt" else self.targets[1]
        return _read_similarity(self.source.path(relative), file_ids, self.drug_ids, order)

    @functools.cached_property
    def adr_protein_table(self) -> pd.DataFrame:
        path = self.source.path(_ADR_PROTEIN_FILE)
        return multi_hot(pd.Series(self.adr_proteins).reindex(self.adr_ids), source=str(path))

    def adr_source(self, name: str) -> pd.DataFrame:
        if name == "adr_protein":
            return self.adr_protein_table
        if name == "sim_apro":
            # The published 5-APro.txt is not aligned with adr.txt (see the module docstring).
            return _jaccard_similarity(self.adr_protein_table)
        path = self.source.path(_ADR_SIMILARITY_FILES[name])
        return _read_similarity(path, list(self.adr_ids), self.adr_ids, "adr.txt")

    def _by_drug_id(
        self,
        tokens_by_key: dict[str, list[str]],
        path: Path,
        key_name: str,
        key_of=None,
    ) -> dict[str, list[str]]:
        """Re-key token lists from DrugBank ids (or another key) to drug ids."""
        if key_of is None:
            key_of = self.drug_id_by_drugbank.get
        known = set(self.drug_ids)
        by_drug: dict[str, list[str]] = {}
        unknown = []
        for key, tokens in tokens_by_key.items():
            drug_id = key_of(key)
            if drug_id is None or drug_id not in known:
                unknown.append(key)
                continue
            by_drug[drug_id] = tokens
        if unknown:
            logger.info(
                "%s: ignored %d line(s) whose %s is not in drug.txt, e.g. %s",
                path,
                len(unknown),
                key_name,
                ", ".join(unknown[:3]),
            )
        return by_drug

    def _cmap(self) -> pd.DataFrame:
        path = self.source.path(_CMAP_FILE)
        profile = _read_dense_matrix(path)
        if profile.shape[0] != len(self.drug_ids):
            raise DataFormatError(
                f"{path}: expected one row per drug of drug.txt ({len(self.drug_ids)}), "
                f"found {profile.shape[0]}"
            )
        # A drug without a CMap signature has a row of zeros in the file.
        missing = ~(profile != 0).any(axis=1)  # (n_drugs,)
        logger.info(
            "%s: %d of %d drugs have no CMap profile", path, int(missing.sum()), len(missing)
        )
        columns = [f"cmap_{j}" for j in range(profile.shape[1])] + [CMAP_MISSING_COLUMN]
        values = np.concatenate([profile, missing[:, None]], axis=1)  # (n_drugs, n_probes + 1)
        return pd.DataFrame(values.astype(np.float32), index=self.drug_ids.copy(), columns=columns)


def multi_hot(tokens: pd.Series, source: str = "tokens") -> pd.DataFrame:
    """Encode token lists as a 0/1 table with one column per distinct token.

    Args:
        tokens: Token lists indexed by entity id. Each value is an iterable of tokens, or
            a missing value (NaN or None) for an entity without tokens.
        source: Name of the data in the log message about entities without tokens.

    Returns:
        A uint8 data frame with the index of ``tokens`` and the sorted distinct tokens as
        columns.

    Raises:
        TypeError: When a value is a single string instead of a list of tokens.

    Example:
        >>> table = multi_hot(pd.Series({"d1": ["b", "a"], "d2": None, "d3": ["a", "a"]}))
        >>> table.columns.tolist(), table.to_numpy().tolist()
        (['a', 'b'], [[1, 1], [0, 0], [1, 0]])
    """
    lists = []
    for entity, value in zip(tokens.index, tokens.tolist()):
        if isinstance(value, str):
            raise TypeError(
                f"{source}: the tokens of {entity!r} must be a list of tokens, got the string "
                f"{value[:80]!r}. Split it into tokens first"
            )
        lists.append([] if _is_missing(value) else list(value))
    columns = sorted({token for items in lists for token in items})
    position = {token: j for j, token in enumerate(columns)}
    values = np.zeros((len(lists), len(columns)), dtype=np.uint8)
    for row, items in enumerate(lists):
        values[row, [position[token] for token in items]] = 1
    empty = sum(1 for items in lists if not items)
    if empty:
        logger.info(
            "%s: %d of %d entities have no tokens, so their rows are zeros",
            source,
            empty,
            len(lists),
        )
    return pd.DataFrame(values, index=tokens.index.copy(), columns=columns)


def _is_missing(value) -> bool:
    """Return True for a missing scalar such as None, NaN or pd.NA, and False for a container."""
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return False
    return bool(pd.isna(value))


# ---------------------------------------------------------------------------------------
# Readers of the MEF node-attribute and similarity files
# ---------------------------------------------------------------------------------------


def _read_entities(path: Path, names: Sequence[str], required: Sequence[str]) -> pd.DataFrame:
    table = read_fixed_columns(path, names, required=required)
    repeated = table["id"].duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0])
        raise DataFormatError(
            f"{path}, line {table['line'].iloc[row]}: the id {table['id'].iloc[row]!r} appears "
            f"more than once, but entity ids must be unique"
        )
    return table


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """Return the 1-based number and stripped text of every non-blank line of a UTF-8 file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"{path}: the file is not UTF-8 text ({error.reason}), re-save it as UTF-8"
        ) from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        raise DataFormatError(f"{path}: the file is empty")
    return lines


def _store_unique(store: dict, key: str, value, path: Path, line: int, first_line: dict) -> None:
    if key in store:
        raise DataFormatError(
            f"{path}, line {line}: the key {key!r} appears again (first on line "
            f"{first_line[key]}), but each entity must have one line"
        )
    store[key] = value
    first_line[key] = line


def _read_drug_atc(path: Path) -> dict[str, list[str]]:
    """Return ATC tokens (codes and their level prefixes) by PubChem CID key, e.g. CID000003015."""
    tokens: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for number, line in _text_lines(path):
        fields = [field.strip() for field in line.split(",")]
        key, codes = fields[0], [code for code in fields[1:] if code]
        if not _PUBCHEM_CID.match(key):
            raise DataFormatError(
                f"{path}, line {number}: expected a PubChem key like 'CID000003015' as the first "
                f"field, found {key!r}"
            )
        bad = [code for code in codes if not _ATC_CODE.match(code)]
        if bad:
            raise DataFormatError(
                f"{path}, line {number}: invalid ATC code {bad[0]!r}, expected 7 characters "
                f"like 'N06AA21'"
            )
        levels = [code[:length] for code in codes for length in ATC_PREFIX_LENGTHS]
        _store_unique(tokens, key, list(dict.fromkeys(levels)), path, number, first_line)
    return tokens


def _cid_to_drug_id(key: str) -> str:
    """Map a MEF PubChem key to the drug id of drug.txt: CID000003015 -> "-3015"."""
    return f"-{int(_PUBCHEM_CID.match(key).group(1))}"


def _read_drug_targets(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Parse lines like ``['DB00330', ['P0A560', 'P72059']]`` without evaluating code.

    Returns the targets by DrugBank id and the DrugBank ids in line order.
    """
    targets: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for number, line in _text_lines(path):
        try:
            # literal_eval accepts only Python literals, never calls or names.
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
            raise DataFormatError(
                f"{path}, line {number}: expected a list like ['DB00330', ['P0A560']], "
                f"could not parse {line[:80]!r} ({type(error).__name__})"
            ) from None
        valid = (
            isinstance(record, (list, tuple))
            and len(record) == 2
            and isinstance(record[0], str)
            and isinstance(record[1], (list, tuple))
            and all(isinstance(target, str) for target in record[1])
        )
        if not valid:
            raise DataFormatError(
                f"{path}, line {number}: expected [DrugBank id, [target ids]] of strings, "
                f"found {line[:80]!r}"
            )
        stripped = [target.strip() for target in record[1]]
        targets_of_drug = list(dict.fromkeys(target for target in stripped if target))
        _store_unique(targets, record[0].strip(), targets_of_drug, path, number, first_line)
    return targets, list(targets)


def _read_keyed_token_lines(path: Path) -> dict[str, list[str]]:
    """Parse lines ``key, token, token, ...`` (drug-pathway.txt, drug-disease.txt)."""
    tokens: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for number, line in _text_lines(path):
        fields = [field.strip() for field in line.split(",")]
        key = fields[0]
        if not key:
            raise DataFormatError(f"{path}, line {number}: the key (first field) is empty")
        values = list(dict.fromkeys(field for field in fields[1:] if field))
        _store_unique(tokens, key, values, path, number, first_line)
    return tokens


def _read_adr_proteins(path: Path) -> dict[str, list[str]]:
    """Parse adr-protein.csv into protein symbols by UMLS CUI.

    An ADR may span several lines, whose proteins are merged. The mode suffixes ``@inh``
    and ``@act`` are removed, as MEF does for its APro similarity.
    """
    proteins: dict[str, list[str]] = {}
    lines = _text_lines(path)
    if lines and not _UMLS_CUI.match(lines[0][1].split(",")[0].strip()):
        lines = lines[1:]  # the header, e.g. "UMLS code of SE,all proteins"
    for number, line in lines:
        fields = line.split(",")
        if len(fields) != 2:
            raise DataFormatError(
                f"{path}, line {number}: expected 2 comma-separated fields (UMLS code, "
                f"space-separated proteins), found {len(fields)}: {line[:80]!r}"
            )
        adr = fields[0].strip()
        if not _UMLS_CUI.match(adr):
            raise DataFormatError(
                f"{path}, line {number}: expected a UMLS CUI like 'C0033117', found {adr!r}"
            )
        symbols = [_PROTEIN_MODE.sub("", token) for token in fields[1].split()]
        merged = proteins.setdefault(adr, [])
        merged.extend(symbol for symbol in symbols if symbol not in merged)
    return proteins


def _read_dense_matrix(path: Path) -> np.ndarray:
    """Read a headerless tab-separated numeric matrix, reporting the first bad line."""
    if not path.read_bytes().strip():
        raise DataFormatError(f"{path}: the file is empty")
    try:
        # Blank lines are kept as rows of NaN, so that row r is line r + 1 and a blank line
        # is reported as missing values on its own line number.
        table = pd.read_csv(path, sep="\t", header=None, skip_blank_lines=False)
    except pd.errors.ParserError as error:
        raise DataFormatError(f"{path}: not a rectangular tab-separated table ({error})") from None
    values = _numeric_values(table, str(path), [f"line {row + 1}" for row in range(len(table))])
    return values


def _read_similarity(path: Path, file_ids: list[str], ids: pd.Index, order: str) -> pd.DataFrame:
    """Read a square similarity matrix whose rows follow ``file_ids`` and key it by ``ids``."""
    matrix = _read_dense_matrix(path)
    if matrix.shape != (len(file_ids), len(file_ids)):
        raise DataFormatError(
            f"{path}: expected a {len(file_ids)} x {len(file_ids)} matrix in the order of "
            f"{order}, found {matrix.shape[0]} x {matrix.shape[1]}"
        )
    positions = pd.Index(file_ids).get_indexer(ids)  # (n,) row of each entity in the file
    if (positions < 0).any() or len(set(file_ids)) != len(file_ids):
        absent = [entity for entity, position in zip(ids, positions) if position < 0]
        raise DataFormatError(
            f"{path}: cannot align the rows, because {order} does not list every entity "
            f"exactly once ({len(absent)} missing, e.g. {absent[:3]})"
        )
    aligned = matrix[np.ix_(positions, positions)]  # (n, n), rows and columns permuted together
    return pd.DataFrame(aligned.astype(np.float32), index=ids.copy(), columns=ids.copy())


def _jaccard_similarity(table: pd.DataFrame) -> pd.DataFrame:
    """Return the Jaccard similarity of the 0/1 rows: 0 if either row is empty, 1 on the diagonal."""
    values = (table.to_numpy() != 0).astype(np.float64)  # (n, d)
    shared = values @ values.T  # (n, n)
    sizes = values.sum(axis=1)  # (n,)
    union = sizes[:, None] + sizes[None, :] - shared  # (n, n)
    similarity = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    np.fill_diagonal(similarity, 1.0)
    return pd.DataFrame(
        similarity.astype(np.float32), index=table.index.copy(), columns=table.index.copy()
    )


# ---------------------------------------------------------------------------------------
# Generic feature tables
# ---------------------------------------------------------------------------------------

_TEXT_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": "\t"}
_PARQUET_SUFFIXES = (".parquet", ".pq")


def read_feature_table(
    path: str | os.PathLike,
    id_column: str = "id",
    tokens_column: str | None = None,
    token_separator: str = ";",
    delimiter: str | None = None,
) -> pd.DataFrame:
    """Read a feature table keyed by entity id from CSV, TSV or Parquet.

    The table is either dense (every column but the id column is numeric) or has one
    column of token lists, which is encoded as multi-hot with ``multi_hot``. Text files
    need a header line, and fully blank lines are skipped.

    Args:
        path: A ``.csv``, ``.tsv``, ``.tab``, ``.txt`` or ``.parquet`` file.
        id_column: The column of entity ids.
        tokens_column: The column of token lists. When None, all other columns are dense
            features.
        token_separator: Separator between the tokens of one cell, e.g. ``";"`` or ``" "``.
        delimiter: Field delimiter of a text file. When None, it is chosen from the suffix:
            comma for ``.csv``, tab otherwise.

    Returns:
        A data frame indexed by the string ids (index name ``id``): float64 columns for a
        dense table, uint8 token columns for a token table.

    Raises:
        DataFormatError: When the file is empty or has no data rows, the id column or the
            tokens column is missing, an id is empty or repeated, or a dense value is
            missing or non-numeric. The message names the file, the line (the row for
            Parquet), the column and the value.
        ValueError: When the suffix is not supported.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "targets.csv"
        >>> _ = path.write_text("id,targets\\nd1,P1;P2\\nd2,P2\\n")
        >>> read_feature_table(path, tokens_column="targets").to_dict("index")
        {'d1': {'P1': 1, 'P2': 1}, 'd2': {'P1': 0, 'P2': 1}}
    """
    path = Path(path)
    table, row_labels = _read_raw_table(path, delimiter)
    if id_column not in table.columns:
        raise DataFormatError(
            f"{path}: no id column {id_column!r} among the columns {list(table.columns)[:20]}. "
            f"Pass id_column= to name the id column"
        )
    ids = table[id_column].map(lambda value: "" if _is_missing(value) else str(value).strip())
    empty = np.flatnonzero(ids.to_numpy() == "")
    if len(empty) > 0:
        raise DataFormatError(
            f"{path}, {row_labels[empty[0]]}: the id column {id_column!r} is empty"
        )
    repeated = np.flatnonzero(ids.duplicated().to_numpy())
    if len(repeated) > 0:
        first = int(np.flatnonzero((ids == ids.iloc[repeated[0]]).to_numpy())[0])
        raise DataFormatError(
            f"{path}, {row_labels[repeated[0]]}: the id {ids.iloc[repeated[0]]!r} appears again "
            f"(first on {row_labels[first]}), but ids must be unique"
        )
    index = pd.Index(ids.to_numpy(), name="id")

    if tokens_column is not None:
        if tokens_column not in table.columns:
            raise DataFormatError(
                f"{path}: no tokens column {tokens_column!r} among the columns "
                f"{list(table.columns)[:20]}"
            )
        lists = []
        for cell in table[tokens_column].tolist():
            parts = [] if _is_missing(cell) else str(cell).split(token_separator)
            lists.append([part.strip() for part in parts if part.strip()])
        return multi_hot(pd.Series(lists, index=index, dtype=object), source=str(path))

    features = table.drop(columns=[id_column])
    if features.shape[1] == 0:
        raise DataFormatError(
            f"{path}: no feature columns besides the id column {id_column!r}. Pass "
            f"tokens_column= for a table of token lists"
        )
    values = _numeric_values(features, str(path), row_labels)
    return pd.DataFrame(values, index=index, columns=[str(column) for column in features.columns])


def _read_raw_table(path: Path, delimiter: str | None) -> tuple[pd.DataFrame, list[str]]:
    """Read a table as strings (text) or as stored (Parquet), with a location label per row."""
    suffix = path.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        table = pd.read_parquet(path)
        if len(table) == 0:
            raise DataFormatError(f"{path}: the table has no rows")
        return table.reset_index(drop=True), [f"row {row + 1}" for row in range(len(table))]

    if suffix not in _TEXT_DELIMITERS and delimiter is None:
        raise ValueError(
            f"{path}: unsupported suffix {suffix!r}, expected one of "
            f"{sorted(_TEXT_DELIMITERS) + list(_PARQUET_SUFFIXES)}, or pass delimiter= for a "
            f"text file"
        )
    if not path.read_bytes().strip():
        raise DataFormatError(
            f"{path}: the file is empty, expected a header line with the id column"
        )
    delimiter = _TEXT_DELIMITERS.get(suffix, ",") if delimiter is None else delimiter
    table = _read_text_table(path, delimiter)

    labels = np.array([f"line {row + 2}" for row in range(len(table))])
    blank = (table.apply(lambda column: column.str.strip()) == "").all(axis=1).to_numpy()
    table = table.loc[~blank].reset_index(drop=True)
    if len(table) == 0:
        raise DataFormatError(f"{path}: no data rows below the header line")
    return table, labels[~blank].tolist()


def _read_text_table(path: Path, delimiter: str) -> pd.DataFrame:
    """Read a delimited text file with a header as strings, keeping blank lines as rows of ""."""
    try:
        with warnings.catch_warnings():
            # pandas only warns, and drops data, when a line has more fields than the header.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # Blank lines are kept while reading, so that row r is line r + 2 (after the header).
            return pd.read_csv(
                path,
                sep=delimiter,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
                index_col=False,
                encoding="utf-8-sig",
            )
    except pd.errors.ParserWarning:
        raise DataFormatError(
            f"{path}: not a rectangular table, because a line has more {delimiter!r}-separated "
            f"fields than the header line"
        ) from None
    except pd.errors.ParserError as error:
        raise DataFormatError(f"{path}: not a rectangular table ({error})") from None
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"{path}: the file is not UTF-8 text ({error.reason}), re-save it as UTF-8"
        ) from None


def _numeric_values(table: pd.DataFrame, source: str, row_labels: Sequence[str]) -> np.ndarray:
    """Convert every column to float64, raising for the first missing or non-numeric value.

    Columns are checked in order, and the message names the column and ``row_labels[row]``.
    """
    converted = []
    for column in table.columns:
        raw = table[column]
        if raw.dtype == bool or pd.api.types.is_numeric_dtype(raw.dtype):
            numbers = raw.to_numpy(dtype=np.float64, na_value=np.nan)
            bad_text = np.zeros(len(raw), dtype=bool)
        else:
            text = raw.map(lambda value: "" if _is_missing(value) else str(value).strip())
            numbers = pd.to_numeric(text.replace("", np.nan), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            is_nan_text = text.str.lower().isin(["", "nan"]).to_numpy()
            bad_text = np.isnan(numbers) & ~is_nan_text
        bad_rows = np.flatnonzero(bad_text)
        if len(bad_rows) > 0:
            row = bad_rows[0]
            raise DataFormatError(
                f"{source}, {row_labels[row]}: column {column!r} has the non-numeric value "
                f"{_plain(raw.iloc[row])!r} ({len(bad_rows)} non-numeric value(s) in this column)"
            )
        nan_rows = np.flatnonzero(~np.isfinite(numbers))
        if len(nan_rows) > 0:
            row = nan_rows[0]
            raise DataFormatError(
                f"{source}, {row_labels[row]}: column {column!r} is missing or not finite "
                f"(value {_plain(raw.iloc[row])!r}, {len(nan_rows)} such value(s) in this column). "
                f"Fill or drop these rows"
            )
        converted.append(numbers)
    if not converted:
        return np.zeros((len(table), 0))
    return np.stack(converted, axis=1)  # (rows, columns)


def _plain(value):
    """Return a numpy scalar as a Python scalar, so messages show nan, not np.float64(nan)."""
    return value.item() if isinstance(value, np.generic) else value


def align_features(
    table: pd.DataFrame, ids: Iterable, source: str, missing: str = "error"
) -> tuple[np.ndarray, np.ndarray]:
    """Return the feature rows of ``ids`` in order, as a float32 matrix.

    Ids are compared as strings. Table rows whose id is not in ``ids`` are ignored and
    counted in the log. Only the rows of ``ids`` are checked for missing and non-numeric
    values.

    Args:
        table: Features indexed by entity id, e.g. from ``read_feature_table``.
        ids: The entity ids in model order, e.g. ``InteractionData.row_ids``.
        source: Name of the table (file or source name) used in messages.
        missing: ``"error"`` to raise when an id has no row, ``"zero"`` to give it a row of
            zeros and log the count.

    Returns:
        ``(values, missing_mask)``: ``(n_ids, d)`` float32 features and ``(n_ids,)`` bool,
        true for ids that had no row.

    Raises:
        DataFormatError: When the table has no columns, an id repeats in the table, an id
            has no row and ``missing="error"``, or a value is missing, infinite or
            non-numeric.
        ValueError: When ``missing`` is invalid or ``ids`` repeats an id.

    Example:
        >>> table = pd.DataFrame({"x": [1.0, 2.0]}, index=["b", "a"])
        >>> values, mask = align_features(table, ["a", "b", "c"], "demo", missing="zero")
        >>> values.tolist(), mask.tolist()
        ([[2.0], [1.0], [0.0]], [False, False, True])
    """
    if missing not in ("error", "zero"):
        raise ValueError(f"missing must be 'error' or 'zero', got {missing!r}")
    ids = pd.Index([str(entity) for entity in ids])
    if ids.has_duplicates:
        raise ValueError(
            f"ids: the id {ids[ids.duplicated()][0]!r} appears more than once, but ids must "
            f"be unique"
        )
    if table.shape[1] == 0:
        raise DataFormatError(f"{source}: the feature table has no columns")
    index = pd.Index([str(entity) for entity in table.index])
    repeated = index[index.duplicated()]
    if len(repeated) > 0:
        raise DataFormatError(
            f"{source}: the id {repeated[0]!r} has {int((index == repeated[0]).sum())} rows "
            f"({len(repeated.unique())} repeated id(s)), but ids must be unique"
        )

    positions = index.get_indexer(ids)  # (n_ids,) table row of each id, -1 when absent
    missing_mask = positions < 0
    if missing_mask.any():
        absent = list(ids[missing_mask][:3])
        if missing == "error":
            raise DataFormatError(
                f"{source}: {int(missing_mask.sum())} of {len(ids)} ids have no feature row, "
                f"e.g. {absent}. Add their rows or pass missing='zero' to fill them with zeros"
            )
        logger.warning(
            "%s: %d of %d ids have no feature row, e.g. %s. Filled them with zeros",
            source,
            int(missing_mask.sum()),
            len(ids),
            absent,
        )
    extra = len(index) - int((~missing_mask).sum())
    if extra:
        logger.info("%s: ignored %d row(s) whose id is not in the entity list", source, extra)

    used = table.iloc[positions[~missing_mask]]
    used_values = _numeric_values(used, source, [f"id {entity!r}" for entity in ids[~missing_mask]])
    values = np.zeros((len(ids), table.shape[1]), dtype=np.float32)  # (n_ids, d)
    values[~missing_mask] = used_values
    return values, missing_mask


# ---------------------------------------------------------------------------------------
# Scaling
# ---------------------------------------------------------------------------------------


class FeatureScaler:
    """Standardize dense feature columns with statistics of selected (training) rows.

    Columns whose fitted values are all 0 or 1 (multi-hot bits, indicators) are passed
    through unchanged. Other columns become ``(x - mean) / std``, with a std of 0 replaced
    by 1. Rows marked missing are left out of the fit and set to zero by ``transform``.

    Example:
        >>> values = np.array([[1.0, 0.0], [3.0, 1.0], [100.0, 1.0]])
        >>> scaler = FeatureScaler().fit(values, rows=[0, 1])
        >>> scaler.transform(values).tolist()
        [[-1.0, 0.0], [1.0, 1.0], [98.0, 1.0]]
    """

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None

    def fit(
        self,
        values: np.ndarray,
        rows: Sequence[int] | np.ndarray | None = None,
        missing: np.ndarray | None = None,
    ) -> FeatureScaler:
        """Compute column means and standard deviations on the selected rows.

        Args:
            values: ``(N, d)`` features of all entities.
            rows: Indices of the rows to fit on, e.g. the training drugs, or None for all rows.
            missing: ``(N,)`` bool, true for rows without data, which are left out.

        Returns:
            The fitted scaler.

        Raises:
            ValueError: When ``values`` is not 2-D, ``missing`` has the wrong length, or no
                row is left to fit on.
        """
        values = _check_matrix(values)
        selected = np.zeros(len(values), dtype=bool)
        if rows is None:
            selected[:] = True
        else:
            selected[np.asarray(rows, dtype=np.int64)] = True
        if missing is not None:
            missing = np.asarray(missing, dtype=bool)
            if missing.shape != (len(values),):
                raise ValueError(f"missing must have shape ({len(values)},), got {missing.shape}")
            selected &= ~missing
        if not selected.any():
            raise ValueError("no rows to fit on: rows is empty or every selected row is missing")
        fitted = values[selected]  # (n_selected, d)
        binary = np.isin(fitted, (0.0, 1.0)).all(axis=0)  # (d,)
        std = fitted.std(axis=0)
        self.mean_ = np.where(binary, 0.0, fitted.mean(axis=0))
        self.scale_ = np.where(binary | (std == 0), 1.0, std)
        return self

    def transform(self, values: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
        """Apply the fitted standardization.

        Args:
            values: ``(N, d)`` features with the fitted number of columns.
            missing: ``(N,)`` bool, true for rows to set to zero.

        Returns:
            ``(N, d)`` float32 scaled features.

        Raises:
            ValueError: When the scaler is not fitted or the shapes do not match.
        """
        if self.mean_ is None or self.scale_ is None:
            raise ValueError("FeatureScaler is not fitted. Call fit() on the training rows first")
        values = _check_matrix(values)
        if values.shape[1] != len(self.mean_):
            raise ValueError(
                f"values must have {len(self.mean_)} columns as in fit(), got {values.shape[1]}"
            )
        scaled = ((values - self.mean_) / self.scale_).astype(np.float32)  # (N, d)
        if missing is not None:
            missing = np.asarray(missing, dtype=bool)
            if missing.shape != (len(values),):
                raise ValueError(f"missing must have shape ({len(values)},), got {missing.shape}")
            scaled[missing] = 0.0
        return scaled


def _check_matrix(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be a 2-D (N, d) array, got shape {values.shape}")
    return values


# ---------------------------------------------------------------------------------------
# Feature matrices of a model, and the features of new rows
# ---------------------------------------------------------------------------------------

# A 0/1 column whose name ends with this suffix marks the rows that have no data in its
# source, such as fingerprint_missing and cmap_missing.
MISSING_INDICATOR_SUFFIX = "_missing"
FINGERPRINT_SOURCE = "fingerprint"


@dataclass(frozen=True)
class FeatureMatrix:
    """The side features of one entity type as one matrix, with the column block of each source.

    Attributes:
        values: ``(n, d)`` float32 features in model order; ``d`` is 0 without features.
        layout: One ``{"source": name, "width": W, "offset": O}`` per source in column
            order, so the source owns the columns ``O`` to ``O + W - 1``.
        scalers: ``{source: {"mean": [...], "scale": [...]}}`` of the standardized sources,
            as plain lists of floats with one entry per column of the source.
    """

    values: np.ndarray
    layout: list[dict[str, Any]]
    scalers: dict[str, dict[str, list[float]]]

    @property
    def dim(self) -> int:
        """Number of feature columns."""
        return int(self.values.shape[1])


def assemble_features(
    tables: Mapping[str, pd.DataFrame],
    ids: Iterable,
    fit_rows: Sequence[int] | np.ndarray | None = None,
    missing: str = "error",
) -> FeatureMatrix:
    """Align feature tables with the entities and concatenate them in the order of ``tables``.

    A source is standardized with ``FeatureScaler`` when one of its values on the rows
    ``fit_rows`` lies outside [0, 1], such as the CMap rank profile. Multi-hot bits and
    similarity rows in [0, 1] are used as they are. The scaler is fitted on ``fit_rows``
    only, so the held-out rows of a cold split do not change the features of any row.
    Rows without data in a source (absent from the table, or with its ``*_missing``
    indicator set) are left out of the fit. Their scaled values are 0, the training
    mean, and their indicator columns keep the value 1.

    Args:
        tables: Feature tables by source name, each indexed by entity id, such as
            ``InteractionData.row_features``.
        ids: Entity ids in model order.
        fit_rows: Positions in ``ids`` of the training entities, which the scalers are
            fitted on; None for all.
        missing: ``"error"`` or ``"zero"``, what ``align_features`` does with an id that
            has no row in a table.

    Returns:
        The ``(len(ids), d)`` matrix, its layout and the fitted scalers. Without tables,
        ``d`` is 0.

    Raises:
        DataFormatError: When a table cannot be aligned with ``ids`` (see
            ``align_features``).
        ValueError: When ``missing`` is invalid.

    Example:
        >>> tables = {
        ...     "bits": pd.DataFrame({"b0": [1, 0, 1]}, index=["a", "b", "c"]),
        ...     "dose": pd.DataFrame({"mg": [10.0, 30.0, 500.0]}, index=["a", "b", "c"]),
        ... }
        >>> matrix = assemble_features(tables, ["a", "b", "c"], fit_rows=[0, 1])
        >>> matrix.values.tolist()
        [[1.0, -1.0], [0.0, 1.0], [1.0, 48.0]]
        >>> matrix.layout
        [{'source': 'bits', 'width': 1, 'offset': 0}, {'source': 'dose', 'width': 1, 'offset': 1}]
        >>> matrix.scalers
        {'dose': {'mean': [20.0], 'scale': [10.0]}}
    """
    ids = [str(entity) for entity in ids]
    fit_mask = np.zeros(len(ids), dtype=bool)
    if fit_rows is None:
        fit_mask[:] = True
    else:
        fit_mask[np.asarray(fit_rows, dtype=np.int64)] = True

    blocks = []
    layout: list[dict[str, Any]] = []
    scalers: dict[str, dict[str, list[float]]] = {}
    offset = 0
    for name, table in tables.items():
        values, absent = align_features(table, ids, str(name), missing=missing)
        indicators = np.array(
            [str(column).endswith(MISSING_INDICATOR_SUFFIX) for column in table.columns]
        )
        without_data = absent | (values[:, indicators] == 1).any(axis=1)  # (n,)
        fitted = values[fit_mask & ~without_data]  # (n_fit, width)
        if len(fitted) == 0:
            logger.warning(
                "feature source %s: no training entity has data, so the source is not standardized",
                name,
            )
        elif ((fitted < 0) | (fitted > 1)).any():
            scaler = FeatureScaler().fit(
                values, rows=np.flatnonzero(fit_mask), missing=without_data
            )
            scaled = scaler.transform(values, missing=without_data)  # (n, width)
            scaled[:, indicators] = values[:, indicators]
            values = scaled
            scalers[str(name)] = {
                "mean": scaler.mean_.tolist(),
                "scale": scaler.scale_.tolist(),
            }
            logger.info(
                "feature source %s: standardized with the statistics of %d training entities",
                name,
                len(fitted),
            )
        layout.append({"source": str(name), "width": int(values.shape[1]), "offset": offset})
        offset += values.shape[1]
        blocks.append(values)

    if not blocks:
        return FeatureMatrix(np.zeros((len(ids), 0), dtype=np.float32), layout, scalers)
    matrix = np.concatenate(blocks, axis=1).astype(np.float32)  # (n, sum of widths)
    return FeatureMatrix(matrix, layout, scalers)


def make_featurizer(
    row: FeatureMatrix, col: FeatureMatrix, fingerprint_radius: int, fingerprint_bits: int
) -> dict[str, Any]:
    """Describe how the feature matrices were built, as plain values for a checkpoint.

    The result is the ``featurizer`` hyperparameter of ``HybridMF``, which
    ``featurize_new_rows`` reads at prediction time. It holds only dicts, lists, strings,
    integers and floats, so a checkpoint loads with ``torch.load(weights_only=True)``.

    Args:
        row: The row features of the model.
        col: The column features of the model.
        fingerprint_radius: Morgan radius of the ``fingerprint`` source.
        fingerprint_bits: Number of fingerprint bits.

    Returns:
        ``{"row": layout, "col": layout, "fingerprint_radius": R, "fingerprint_bits": B,
        "scalers": {"row": {...}, "col": {...}}}`` with the layouts of ``FeatureMatrix``.

    Example:
        >>> empty = FeatureMatrix(np.zeros((2, 0), dtype=np.float32), [], {})
        >>> make_featurizer(empty, empty, 2, 2048)["row"]
        []
    """
    return {
        "row": [dict(entry) for entry in row.layout],
        "col": [dict(entry) for entry in col.layout],
        "fingerprint_radius": int(fingerprint_radius),
        "fingerprint_bits": int(fingerprint_bits),
        "scalers": {"row": dict(row.scalers), "col": dict(col.scalers)},
    }


def featurize_new_rows(smiles: Sequence[str], featurizer: Mapping[str, Any]) -> np.ndarray:
    """Build the row features of new molecules from their SMILES, as the model was trained.

    The ``fingerprint`` block gets the Morgan bits of ``featurize_smiles`` with the
    settings of ``featurizer`` and ``fingerprint_missing = 0``. A SMILES that RDKit cannot
    parse gets zero bits and ``fingerprint_missing = 1``, plus a logged warning, exactly
    like a training drug without a usable SMILES. Every other row source (ATC codes,
    targets, similarity rows, ...) is unknown for a new molecule, so its block is all
    zeros. That is the value of a training drug without entries in a multi-hot source,
    and the training mean of a standardized source.

    Args:
        smiles: One SMILES string per new molecule.
        featurizer: The ``featurizer`` hyperparameter of a trained ``HybridMF`` (see
            ``make_featurizer``).

    Returns:
        ``(len(smiles), d)`` float32 features, ready for ``HybridMF.score_new_rows``.

    Raises:
        TypeError: When ``smiles`` is a single string instead of a list of strings.
        ValueError: When ``featurizer`` is malformed, or its row features have no
            ``fingerprint`` source, so a SMILES carries no information for the model.

    Example:
        >>> featurizer = {
        ...     "row": [{"source": "atc", "width": 2, "offset": 0},
        ...             {"source": "fingerprint", "width": 17, "offset": 2}],
        ...     "col": [], "fingerprint_radius": 2, "fingerprint_bits": 16, "scalers": {},
        ... }
        >>> values = featurize_new_rows(["C", "not a smiles"], featurizer)
        >>> values.shape
        (2, 19)
        >>> values[:, :2].tolist(), values[:, -1].tolist()
        ([[0.0, 0.0], [0.0, 0.0]], [0.0, 1.0])
    """
    if isinstance(smiles, str):
        raise TypeError(
            f"smiles must be a list of SMILES strings, got the string {smiles[:80]!r}. Wrap it "
            f"in a list"
        )
    layout, radius, n_bits = _check_featurizer(featurizer)
    blocks = {entry["source"]: entry for entry in layout}
    fingerprint = blocks.get(FINGERPRINT_SOURCE)
    if fingerprint is None:
        raise ValueError(
            f"the row features of this model have no {FINGERPRINT_SOURCE!r} source (sources: "
            f"{list(blocks)}), so a SMILES carries no information for it. Train with "
            f"--features fingerprints, drug or all to score new molecules"
        )
    if fingerprint["width"] != n_bits + 1:
        raise ValueError(
            f"featurizer: the {FINGERPRINT_SOURCE!r} block has width {fingerprint['width']}, "
            f"expected fingerprint_bits + 1 = {n_bits + 1}"
        )

    smiles = list(smiles)
    names = pd.Index([f"new row {position}" for position in range(len(smiles))])
    bits = morgan_fingerprints(
        pd.Series(smiles, index=names, dtype=object), radius=radius, n_bits=n_bits
    )
    dim = sum(entry["width"] for entry in layout)
    values = np.zeros((len(smiles), dim), dtype=np.float32)  # (n, d)
    start = fingerprint["offset"]
    block = bits.to_numpy(dtype=np.float32)  # (n, n_bits + 1)
    values[:, start : start + fingerprint["width"]] = block
    return values


def _check_featurizer(
    featurizer: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], int, int]:
    """Return the row layout, the fingerprint radius and the bit count of a featurizer."""
    if not isinstance(featurizer, Mapping):
        raise ValueError(
            f"featurizer must be the dict stored as the 'featurizer' hyperparameter of a "
            f"HybridMF checkpoint, got {type(featurizer).__name__}"
        )
    required = ("row", "fingerprint_radius", "fingerprint_bits")
    absent = [key for key in required if key not in featurizer]
    if absent:
        raise ValueError(
            f"featurizer lacks the key(s) {absent}; found {sorted(featurizer)}. The checkpoint "
            f"was written without feature information, so retrain it with this version"
        )
    layout = list(featurizer["row"])
    offset = 0
    for entry in layout:
        if not isinstance(entry, Mapping) or set(entry) != {"source", "width", "offset"}:
            raise ValueError(
                f"featurizer: each row entry must have the keys source, width and offset, "
                f"got {entry!r}"
            )
        if entry["offset"] != offset:
            raise ValueError(
                f"featurizer: the row source {entry['source']!r} starts at column "
                f"{entry['offset']}, expected {offset} right after the previous source"
            )
        offset += entry["width"]
    return layout, int(featurizer["fingerprint_radius"]), int(featurizer["fingerprint_bits"])

"""The MEF drug–ADR data set: locate, download, verify and parse it.

MEF (Cao, Xiao et al., CPT: Pharmacometrics & Systems Pharmacology 4(9):498–506, 2015)
links 746 drugs to 817 adverse drug reactions (ADRs) through 24,803 associations from
SIDER. The files are not part of this repository. They are read from a local copy or
downloaded from github.com/nanxstats/MEF at the pinned commit below, and every downloaded
file is checked against its SHA-256.

The data directory is resolved in this order:

1. the ``data_dir`` argument (``--data-dir`` on the command line),
2. the environment variable ``HYBRIDMF_DATA_DIR``,
3. the cache ``data/mef/`` of this repository checkout (or ``~/.cache/hybridmf/mef`` when
   the package is installed elsewhere), downloading any missing file into it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

from hybridmf.data.errors import DataFormatError, DataNotFoundError
from hybridmf.data.interactions import InteractionData
from hybridmf.data.io import read_fixed_columns, write_atomic

logger = logging.getLogger(__name__)

MEF_REPOSITORY = "nanxstats/MEF"
MEF_COMMIT = "a835e805699ea744607ce92c55704e168a476148"
MEF_BASE_URL = f"https://raw.githubusercontent.com/{MEF_REPOSITORY}/{MEF_COMMIT}"
DATA_DIR_ENV = "HYBRIDMF_DATA_DIR"
# Overrides MEF_BASE_URL, e.g. with a file:// mirror; the checksums still apply.
BASE_URL_ENV = "HYBRIDMF_MEF_URL"

# SHA-256 of each file at MEF_COMMIT, by path relative to the repository root.
MEF_SHA256 = {
    "data/drug.txt": "0f472fc634dfe5799af0ba772393b9bbe6a02bd44f16014eb26e9cf420173c51",
    "data/adr.txt": "4cd43bae2371f7c9b62e0e6baaa33e8fad31acb90c15eb4d545fc9846764345d",
    "data/association.txt": "960cb48b1ea2fae4ec73dc15f634735e6af1a2fea13b1137e3a4f8d6c8b2b742",
    "data/node-attribute/adr-protein.csv": "5481bab529417e8e30f85ebc7f62f91c2d408c2d7fc8c34adfcd4f0f30b0ab65",
    "data/node-attribute/drug-atc.csv": "b4d770a02d293f0726cc7dcbcd49e4a8a6b706d00f4a1d37498386eda76b7d9e",
    "data/node-attribute/drug-cmap-profile.txt": "f0556702c126b8dbb3c5e92a0f9a27694529a36f628a020c7f7f8660fb1207aa",
    "data/node-attribute/drug-disease.txt": "247dbb6919508e80f67cd75125c284fce91e495d5f518b6e0fd9de265334f414",
    "data/node-attribute/drug-pathway.txt": "e289572bcb2a5a2f47ade99990d9823d4c80e8d1aad652bd2569d763512b026e",
    "data/node-attribute/drug-target.txt": "76731c24cb556b5a57b27f3250de152bd9731d3d564ee35984d9a655718ae98e",
    "2-output-similarity/ADR/1-UMLSLin.txt": "be1bcc931e97fe4a492ead58848964b54a32ea3bae283b66d6d39cffb1dc8154",
    "2-output-similarity/ADR/2-UMLSJCN.txt": "cd7cdfc933632514314ced8f2cff55cbc4bd30724d9496160cca9917442846de",
    "2-output-similarity/ADR/3-Coexist.txt": "25f8af64113e2d3c9c1e953f94084d25d3e21b77d676b994487109247fbfe62e",
    "2-output-similarity/ADR/4-MedDRA.txt": "63263ad98833be23fa9f6f1aa9f6c9d51e09dea068e5d16ef4343afdac0ac037",
    "2-output-similarity/ADR/5-APro.txt": "9394d6b6b86e51277cffd015df88bb1fc7f50662d392d9d098fa4e990709fc40",
    "2-output-similarity/Drug/1-ECFP.txt": "68ae6abac1b05fc5b27b9370ff835950ede40f412cc36b0c8e19dd26f2785787",
    "2-output-similarity/Drug/2-ATC.txt": "da06037c73234a810c754de84ae966cf73c0b076bf17c1d988060dd49dc46fbe",
    "2-output-similarity/Drug/3-ProSeq.txt": "2bb360415699229ff2ff66bebffb9dfc08baec4b7fcf8805b6e26fc098db8c80",
    "2-output-similarity/Drug/4-PPI.txt": "edc137d7f9699782624778c8571f42bfe6c28cb3e4ed99c08367a17158ac12dc",
    "2-output-similarity/Drug/5-ProGO.txt": "7fb348778c52dd9be400973c3155ad7ed68b30e4077616712596acebd0683d99",
    "2-output-similarity/Drug/6-Pathway.txt": "e90ff973d62405de3b2529e15ec99bb67a74c3fb86a3b36a1d1fee6630e03027",
    "2-output-similarity/Drug/7-Disease.txt": "dc5af16a5e791f8cacd3dd275a4259434852bb36d637092a9160c34b16df4a5a",
    "2-output-similarity/Drug/8-CMap.txt": "512906d54bdc988aef32cc8032b58870f2633b42b37f7e41fc2aa80479a4b1a2",
}
DRUG_COLUMNS = ("id", "drugbank_id", "kegg_id", "name", "smiles")
ADR_COLUMNS = ("id", "name")
ASSOCIATION_COLUMNS = ("drug_id", "adr_id")


def default_cache_dir() -> Path:
    """Return the download cache: ``data/mef`` of a source checkout, else the user cache."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "hybridmf").is_dir():
        return checkout / "data" / "mef"
    return Path.home() / ".cache" / "hybridmf" / "mef"


class MEFSource:
    """Access to the MEF files of one directory, downloading missing ones when allowed.

    Args:
        data_dir: A local copy of the MEF repository (same relative paths as upstream).
            When None, ``HYBRIDMF_DATA_DIR`` is used, and then the download cache.
        cache_dir: Where downloads go; ``default_cache_dir()`` when None.

    Example:
        >>> import tempfile
        >>> source = MEFSource(tempfile.mkdtemp())
        >>> source.downloads
        False
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, cache_dir=None) -> None:
        if data_dir is None and os.environ.get(DATA_DIR_ENV):
            data_dir = os.environ[DATA_DIR_ENV]
            logger.info("MEF data directory from %s: %s", DATA_DIR_ENV, data_dir)
        if data_dir is not None:
            self.root = Path(data_dir).expanduser()
            self.downloads = False
            if not self.root.is_dir():
                raise DataNotFoundError(
                    f"MEF data directory {str(self.root)!r} does not exist; pass the folder "
                    f"that contains data/drug.txt with --data-dir or {DATA_DIR_ENV}"
                )
        else:
            self.root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            self.downloads = True

    def path(self, relative: str) -> Path:
        """Return the local path of a MEF file, downloading it into the cache if needed.

        Args:
            relative: Path relative to the MEF repository root, e.g. ``"data/drug.txt"``.

        Returns:
            The path of an existing file.

        Raises:
            DataNotFoundError: When the file is missing and cannot be downloaded.
        """
        local = self.root / relative
        if local.is_file():
            return local
        if not self.downloads:
            raise DataNotFoundError(
                f"{local} not found: the MEF directory given by --data-dir or {DATA_DIR_ENV} "
                f"must keep the upstream layout ({relative} under it)"
            )
        download(relative, local)
        return local


def download(relative: str, destination: Path) -> Path:
    """Download one MEF file from the pinned commit and verify its SHA-256.

    Args:
        relative: Path relative to the MEF repository root; must be listed in ``MEF_SHA256``.
        destination: Where to write the file (atomically, after the checksum matched).

    Returns:
        ``destination``.

    Raises:
        DataNotFoundError: When the download fails, for example offline.
        DataFormatError: When the downloaded bytes do not match the pinned checksum.
    """
    if relative not in MEF_SHA256:
        raise DataNotFoundError(f"{relative!r} is not a known MEF file; known: {sorted(MEF_SHA256)}")
    url = f"{os.environ.get(BASE_URL_ENV, MEF_BASE_URL).rstrip('/')}/{relative}"
    logger.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            content = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise DataNotFoundError(
            f"could not download {url} ({error}). Without network access, point hybridmf at "
            f"a local copy of the MEF repository with --data-dir PATH or the environment "
            f"variable {DATA_DIR_ENV}"
        ) from error
    digest = hashlib.sha256(content).hexdigest()
    if digest != MEF_SHA256[relative]:
        raise DataFormatError(
            f"checksum mismatch for {url}: SHA-256 {digest}, expected {MEF_SHA256[relative]}; "
            f"the file was not saved"
        )
    write_atomic(destination, lambda temporary: temporary.write_bytes(content))
    return destination


def verify(data_dir: str | os.PathLike) -> dict[str, str]:
    """Compare the MEF files present under ``data_dir`` with the pinned checksums.

    Args:
        data_dir: A local copy of the MEF repository.

    Returns:
        A problem description per file that is missing or differs; empty when all match.
    """
    problems = {}
    for relative, expected in MEF_SHA256.items():
        path = Path(data_dir) / relative
        if not path.is_file():
            problems[relative] = "missing"
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            problems[relative] = f"SHA-256 {digest}, expected {expected}"
    return problems


def load_mef(data_dir: str | os.PathLike | None = None, cache_dir=None) -> InteractionData:
    """Load the MEF drugs, ADRs and associations as an interaction data set.

    Rows are drugs (columns ``id``, ``drugbank_id``, ``kegg_id``, ``name``, ``smiles``, in
    the order of ``data/drug.txt``) and columns are ADRs (``id`` is the UMLS CUI, ``name``).

    Args:
        data_dir: Local MEF copy; see the module docstring for the resolution order.
        cache_dir: Download cache when no local copy is given.

    Returns:
        The data set (746 drugs, 817 ADRs and 24,803 pairs for the pinned files).

    Raises:
        DataFormatError: When a file is empty or malformed, or an association names an
            unknown drug or ADR; the message names the file, line and value.
        DataNotFoundError: When a file is missing and cannot be downloaded.
    """
    source = MEFSource(data_dir, cache_dir)
    drugs = read_fixed_columns(source.path("data/drug.txt"), DRUG_COLUMNS, required=("id", "name"))
    adrs = read_fixed_columns(source.path("data/adr.txt"), ADR_COLUMNS)
    associations_path = source.path("data/association.txt")
    associations = read_fixed_columns(associations_path, ASSOCIATION_COLUMNS)

    pairs = pd.DataFrame({"row_id": associations["drug_id"], "col_id": associations["adr_id"]})
    return InteractionData.from_frames(
        rows=drugs,
        cols=adrs,
        pairs=pairs,
        name="mef",
        source=str(associations_path),
        line_numbers=associations["line"].to_numpy(),
        row_label="drug",
        col_label="ADR",
        row_source=str(source.path("data/drug.txt")),
        col_source=str(source.path("data/adr.txt")),
    )

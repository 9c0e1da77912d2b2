"""Morgan (ECFP-like) fingerprints of molecules from SMILES, with an on-disk cache.

Bits come from RDKit's ``rdFingerprintGenerator.GetMorganGenerator``. The batch function
``morgan_fingerprints`` and the single-molecule function ``featurize_smiles`` share one
code path, so a new molecule at prediction time gets exactly the bits it would get in a
batch. RDKit's own parse messages are blocked instead of written to stderr, and a SMILES
that does not parse is reported through the Python ``logging`` module with the reason.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import rdkit
from rdkit import Chem, rdBase
from rdkit.Chem import rdFingerprintGenerator

from hybridmf.data.io import write_atomic

logger = logging.getLogger(__name__)

MISSING_COLUMN = "fingerprint_missing"
# Bump when the cached content or its meaning changes, so old cache files stop matching.
_CACHE_FORMAT = 1
# Unparseable SMILES logged one by one before the rest are only counted.
_MAX_LOGGED_FAILURES = 10


def featurize_smiles(smiles: str, radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Compute the Morgan fingerprint of one molecule.

    Args:
        smiles: The molecule as a SMILES string.
        radius: Morgan radius; 2 corresponds to ECFP4.
        n_bits: Length of the folded bit vector.

    Returns:
        ``(n_bits,)`` uint8 array of 0/1, equal to the molecule's row in
        ``morgan_fingerprints`` with the same settings.

    Raises:
        ValueError: When ``smiles`` is empty or RDKit cannot parse it. The message names
            the SMILES and RDKit's reason. Also when ``radius`` or ``n_bits`` is invalid.

    Example:
        >>> bits = featurize_smiles("C", radius=2, n_bits=64)
        >>> bits.shape, bits.dtype, int(bits.sum())
        ((64,), dtype('uint8'), 1)
    """
    _check_settings(radius, n_bits)
    molecule, reason = _parse_smiles(smiles)
    if molecule is None:
        raise ValueError(f"could not parse SMILES {smiles!r}: {reason}")
    return _fingerprint_bits(molecule, radius, n_bits)


def morgan_fingerprints(
    smiles: pd.Series,
    radius: int = 2,
    n_bits: int = 2048,
    cache_dir: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Compute Morgan fingerprints for many molecules, keyed by entity id.

    A SMILES that is missing, empty or that RDKit cannot parse gets an all-zero fingerprint
    and ``fingerprint_missing = 1``, plus a logged warning naming the entity id and the
    SMILES. With ``cache_dir`` the result is stored in a ``.npz`` file whose name contains a
    hash of the SMILES list, the settings and the RDKit version, so an identical second call
    reads the file instead of calling RDKit. A cache file that cannot be read is logged,
    ignored and rewritten.

    Args:
        smiles: SMILES strings indexed by entity id. The index must be unique.
        radius: Morgan radius; 2 corresponds to ECFP4.
        n_bits: Length of the folded bit vector.
        cache_dir: Directory for the cache file, or None for no caching.

    Returns:
        A uint8 data frame with the index of ``smiles``, the columns ``bit_0`` to
        ``bit_{n_bits - 1}`` and a last column ``fingerprint_missing``.

    Raises:
        ValueError: When the index of ``smiles`` repeats an id, or ``radius`` or
            ``n_bits`` is invalid.
        TypeError: When ``smiles`` is not a pandas Series.

    Example:
        >>> table = morgan_fingerprints(pd.Series({"d1": "CCO", "d2": "not a smiles"}), n_bits=16)
        >>> table.shape
        (2, 17)
        >>> table["fingerprint_missing"].tolist()
        [0, 1]
    """
    if not isinstance(smiles, pd.Series):
        raise TypeError(
            f"smiles must be a pandas Series indexed by entity id, got {type(smiles).__name__}"
        )
    _check_settings(radius, n_bits)
    repeated = smiles.index[smiles.index.duplicated()]
    if len(repeated) > 0:
        raise ValueError(
            f"smiles: the entity id {repeated[0]!r} appears more than once, but "
            f"ids must be unique ({len(repeated)} repeated id(s))"
        )

    texts = [_smiles_text(value) for value in smiles.tolist()]
    digest = _cache_digest(texts, radius, n_bits)
    cache_path = None
    cached = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"morgan-r{radius}-b{n_bits}-{digest[:20]}.npz"
        cached = _read_cache(cache_path, digest, len(texts), n_bits)

    if cached is None:
        bits, reasons = _compute_bits(texts, radius, n_bits)
        if cache_path is not None:
            _write_cache(cache_path, digest, bits, reasons)
    else:
        bits, reasons = cached
        logger.info("read %d Morgan fingerprints from the cache %s", len(texts), cache_path)

    missing = np.array([reason != "" for reason in reasons], dtype=np.uint8)  # (N,)
    _log_failures(smiles.index, texts, reasons)

    columns = [f"bit_{i}" for i in range(n_bits)] + [MISSING_COLUMN]
    values = np.concatenate([bits, missing[:, None]], axis=1)  # (N, n_bits + 1)
    return pd.DataFrame(values, index=smiles.index.copy(), columns=columns)


def tanimoto_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Compute the Tanimoto (Jaccard) similarity of binary fingerprints.

    Nonzero entries count as set bits. Two empty fingerprints have similarity 0.

    Args:
        a: ``(d,)`` or ``(N, d)`` fingerprints.
        b: ``(d,)`` or ``(M, d)`` fingerprints.

    Returns:
        A float when both inputs are 1-D, else an ``(N, M)`` float64 array.

    Raises:
        ValueError: When the fingerprint lengths differ or an input is not 1-D or 2-D.

    Example:
        >>> tanimoto_similarity(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
        0.3333333333333333
    """
    a = np.asarray(a)
    b = np.asarray(b)
    for name, array in (("a", a), ("b", b)):
        if array.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D or 2-D, got shape {array.shape}")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"a and b must have the same fingerprint length, got {a.shape[-1]} and {b.shape[-1]}"
        )
    left = np.atleast_2d(a != 0).astype(np.float64)  # (N, d)
    right = np.atleast_2d(b != 0).astype(np.float64)  # (M, d)
    shared = left @ right.T  # (N, M)
    union = left.sum(axis=1)[:, None] + right.sum(axis=1)[None, :] - shared  # (N, M)
    similarity = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    if a.ndim == 1 and b.ndim == 1:
        return float(similarity[0, 0])
    return similarity


def _check_settings(radius: int, n_bits: int) -> None:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
    if isinstance(n_bits, bool) or not isinstance(n_bits, (int, np.integer)) or n_bits < 1:
        raise ValueError(f"n_bits must be a positive integer, got {n_bits!r}")


def _smiles_text(value) -> str:
    """Return the SMILES as stripped text, or "" for a missing value."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    return str(value).strip()


def _parse_smiles(smiles: str) -> tuple[Chem.Mol | None, str]:
    """Parse a SMILES without RDKit output, returning the molecule (or None) and a reason."""
    if not isinstance(smiles, str) or not smiles.strip():
        return None, "empty SMILES"
    # BlockLogs keeps RDKit from writing parse errors to stderr and restores the previous
    # log settings on exit.
    with rdBase.BlockLogs():
        molecule = Chem.MolFromSmiles(smiles.strip())
        if molecule is not None:
            return molecule, ""
        # Only on failure: parse again without sanitization to name what went wrong.
        unsanitized = Chem.MolFromSmiles(smiles.strip(), sanitize=False)
        if unsanitized is None:
            return None, "invalid SMILES syntax"
        problems = [problem.Message() for problem in Chem.DetectChemistryProblems(unsanitized)]
    if not problems:
        return None, "RDKit could not sanitize the molecule"
    more = f", and {len(problems) - 1} more problem(s)" if len(problems) > 1 else ""
    return None, problems[0] + more


@functools.lru_cache(maxsize=8)
def _generator(radius: int, n_bits: int):
    return rdFingerprintGenerator.GetMorganGenerator(radius=int(radius), fpSize=int(n_bits))


def _fingerprint_bits(molecule: Chem.Mol, radius: int, n_bits: int) -> np.ndarray:
    return _generator(radius, n_bits).GetFingerprintAsNumPy(molecule).astype(np.uint8)


def _compute_bits(texts: list[str], radius: int, n_bits: int) -> tuple[np.ndarray, list[str]]:
    """Return ``(N, n_bits)`` uint8 bits and one reason per SMILES ("" when it parsed)."""
    bits = np.zeros((len(texts), n_bits), dtype=np.uint8)
    reasons = []
    for row, text in enumerate(texts):
        molecule, reason = _parse_smiles(text)
        reasons.append(reason)
        if molecule is not None:
            bits[row] = _fingerprint_bits(molecule, radius, n_bits)
    return bits, reasons


def _log_failures(ids: pd.Index, texts: list[str], reasons: list[str]) -> None:
    failed = [row for row, reason in enumerate(reasons) if reason]
    for row in failed[:_MAX_LOGGED_FAILURES]:
        logger.warning(
            "could not parse the SMILES of entity %r: %s. Using an all-zero fingerprint with "
            "%s = 1. SMILES: %r",
            ids[row],
            reasons[row],
            MISSING_COLUMN,
            texts[row][:200],
        )
    if len(failed) > _MAX_LOGGED_FAILURES:
        logger.warning(
            "%d of %d SMILES could not be parsed in total (the first %d are listed above)",
            len(failed),
            len(texts),
            _MAX_LOGGED_FAILURES,
        )


def _cache_digest(texts: list[str], radius: int, n_bits: int) -> str:
    key = {
        "format": _CACHE_FORMAT,
        "rdkit": rdkit.__version__,
        "radius": int(radius),
        "n_bits": int(n_bits),
        "smiles": texts,
    }
    return hashlib.sha256(json.dumps(key).encode("utf-8")).hexdigest()


def _read_cache(
    path: Path, digest: str, n_rows: int, n_bits: int
) -> tuple[np.ndarray, list[str]] | None:
    """Return the cached bits and reasons, or None when the file is absent or unusable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored_digest = str(archive["digest"])
            packed = archive["bits"]
            reasons = [str(reason) for reason in archive["reasons"]]
        if stored_digest != digest:
            raise ValueError(
                f"the stored key {stored_digest[:12]}... differs from {digest[:12]}..."
            )
        bits = np.unpackbits(packed, axis=1, count=n_bits)  # (N, n_bits)
        if bits.shape != (n_rows, n_bits) or len(reasons) != n_rows:
            raise ValueError(
                f"expected {n_rows} fingerprints of {n_bits} bits, found shape {bits.shape}"
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logger.warning(
            "ignoring the unreadable fingerprint cache %s (%s) and rebuilding it", path, error
        )
        return None
    return bits, reasons


def _write_cache(path: Path, digest: str, bits: np.ndarray, reasons: list[str]) -> None:
    def write(temporary: Path) -> None:
        # A file handle keeps numpy from appending ".npz" to the temporary name.
        with open(temporary, "wb") as handle:
            np.savez_compressed(
                handle,
                digest=np.array(digest),
                bits=np.packbits(bits, axis=1),  # (N, ceil(n_bits / 8))
                reasons=np.array(reasons, dtype=str),
            )

    write_atomic(path, write)
    logger.info("wrote %d Morgan fingerprints to the cache %s", len(bits), path)

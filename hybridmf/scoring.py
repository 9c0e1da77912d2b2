"""Rank unknown pairs with a trained model: known drugs by id or name, new molecules by SMILES.

``load_model`` reads a checkpoint written by ``scripts/fit.py`` and turns a missing,
truncated or incompatible file into an error that names the path. ``Ranker`` wraps the
loaded model. It resolves entities by id or case-insensitive name from the ids and names
stored in the checkpoint, so the training data directory is not needed. It returns pandas
data frames with one line per pair:

- ``drug_id``, ``drug_name``, ``adr_id``, ``adr_name``: the pair (the prefixes follow
  ``row_label`` and ``col_label``);
- ``score``: the model's logit. ``score_matrix``, ``rank_cols`` and ``rank_unknown_pairs``
  take it from ``HybridMF.score_rows`` unchanged. ``score_pairs`` and ``rank_rows`` score
  single pairs with ``HybridMF.score_pairs``, which agrees up to float rounding. For a
  model trained with ``--blend ease`` or ``ridge`` it is the blended score of
  ``HybridMF.score_rows``. New molecules get the network's logits under an EASE blend;
- ``probability``: ``sigmoid(score)``. For a model trained with weighted BCE this is the
  model's estimate under a positive weight of ``pos_weight``, so it overstates the share
  of true positives. For a triplet loss (``bpr``, ``margin``) only the order of the scores
  is trained, and the sigmoid is not a calibrated probability at all. For a model
  blended with ``--blend-mode rank`` it is the blended quantile level in [0, 1], not a
  probability either. With ``--blend-mode row`` it is the sigmoid of the network's logit
  moved within the row;
- ``rank``: 1 for the highest score of the query;
- ``known``: whether the pair is one of the known associations stored in the checkpoint.

Scores are computed in chunks of rows, so memory stays bounded by the chunk size and the
size of the returned table.
"""

from __future__ import annotations

import difflib
import logging
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hybridmf.data.features import featurize_new_rows
from hybridmf.data.fingerprints import featurize_smiles
from hybridmf.data.io import read_fixed_columns
from hybridmf.data.sampling import PositiveSet
from hybridmf.model.module import CHECKPOINT_KEY, HybridMF

logger = logging.getLogger(__name__)

# Scores held at once while scanning rows: 4M float32 logits, about 16 MiB.
MAX_CHUNK_SCORES = 1 << 22
# Close matches suggested when an id or name is not found.
_SUGGESTIONS = 5
_ENTITY_KEYS = ("row_ids", "row_names", "col_ids", "col_names", "known_pairs")
# Errors that torch.load (torch 2.13) raises on a zip archive with damaged or foreign
# content. KeyError and UnpicklingError (a ValueError) come from pickles that are not
# checkpoints or contain classes that weights-only loading rejects. RuntimeError, OSError
# and EOFError come from damaged or empty records.
_CHECKPOINT_READ_ERRORS = (RuntimeError, OSError, EOFError, KeyError, ValueError)


def load_model(path: str | os.PathLike, map_location: str | torch.device | None = None) -> HybridMF:
    """Load a ``HybridMF`` checkpoint for prediction, in eval mode.

    Args:
        path: A ``.ckpt`` file written by ``scripts/fit.py``, such as
            ``RUN/checkpoints/last.ckpt``.
        map_location: Device to load the weights onto (``"cpu"``, ``"cuda"``, ``"cuda:1"``,
            a ``torch.device``), or any ``map_location`` accepted by ``torch.load``.
            None loads onto the CPU.

    Returns:
        The model in eval mode, with ``model.entities`` restored from the checkpoint.

    Raises:
        FileNotFoundError: When ``path`` does not exist.
        ValueError: When ``path`` is a directory, the file is truncated or is not a
            PyTorch checkpoint, the checkpoint was not written by hybridmf or has an
            unsupported format version, or ``map_location`` names an unavailable device.
            Each message names the path.

    Example:
        >>> import tempfile, pathlib
        >>> missing = pathlib.Path(tempfile.mkdtemp()) / "last.ckpt"
        >>> load_model(missing)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: checkpoint not found: ...last.ckpt
    """
    path = Path(path)
    map_location = "cpu" if map_location is None else _check_map_location(map_location)
    if not path.exists():
        resolved = "" if path.is_absolute() else f" (resolved to {path.resolve()})"
        raise FileNotFoundError(f"checkpoint not found: {path}{resolved}")
    if path.is_dir():
        found = sorted(str(item) for item in path.rglob("*.ckpt"))[:5]
        hint = f"; checkpoints found under it: {', '.join(found)}" if found else ""
        raise ValueError(f"{path} is a directory; pass a .ckpt file, such as RUN/checkpoints/last.ckpt{hint}")

    checkpoint = _read_checkpoint(path)
    hyperparameters = checkpoint.get(HybridMF.CHECKPOINT_HYPER_PARAMS_KEY)
    if CHECKPOINT_KEY not in checkpoint or not isinstance(hyperparameters, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"{path} is not a hybridmf checkpoint: it lacks the {CHECKPOINT_KEY!r}, "
            f"'hyper_parameters' or 'state_dict' entry (found: {sorted(map(str, checkpoint))[:10]}); "
            f"use a checkpoint written by scripts/fit.py"
        )
    try:
        model = HybridMF.load_from_checkpoint(path, map_location=map_location)
    except ValueError as error:
        # HybridMF.on_load_checkpoint rejects an unsupported format version.
        raise ValueError(f"{path}: {error}") from None
    except (TypeError, RuntimeError) as error:
        # Hyperparameters or weights that this version of HybridMF does not accept.
        raise ValueError(f"{path}: could not rebuild the model from the checkpoint: {error}") from None
    return model.eval()


def _check_map_location(map_location: Any) -> Any:
    """Reject a device string or ``torch.device`` that is invalid or not available here."""
    if not isinstance(map_location, (str, torch.device)):
        return map_location
    try:
        device = torch.device(map_location)
    except RuntimeError as error:
        raise ValueError(f"map_location {map_location!r} is not a valid device, such as 'cpu' or 'cuda:0': {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location {map_location!r} requests a CUDA device, but CUDA is not available here; use 'cpu'")
    return map_location


def _read_checkpoint(path: Path) -> dict:
    """Return the raw checkpoint dict of ``path``, read onto the CPU without running code."""
    # torch.save writes a zip archive; a copy that was cut short has no central directory.
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a complete PyTorch checkpoint (not a valid zip archive): the file is "
            f"truncated, corrupt or another kind of file; copy it again or retrain"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except _CHECKPOINT_READ_ERRORS as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"could not read the checkpoint {path}: {reason}; the file is corrupt or is not a "
            f"checkpoint written by scripts/fit.py"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{path} is not a hybridmf checkpoint: it contains a {type(checkpoint).__name__}, not a "
            f"dict; use a checkpoint written by scripts/fit.py"
        )
    return checkpoint


class Ranker:
    """Scores and rankings of a trained model, addressed by entity id or name.

    The ranker puts the model in eval mode and scores on the model's device; results are
    on the CPU. Ids are matched exactly first, then ids and names case-insensitively.

    Args:
        model: A trained model whose ``entities`` hold ``row_ids``, ``row_names``,
            ``col_ids``, ``col_names`` and ``known_pairs``, as restored by ``load_model``.
        row_label: Prefix of the row columns of the returned tables (``drug_id``, ...).
        col_label: Prefix of the column columns (``adr_id``, ...).
        chunk_rows: Rows scored at once; None picks ``MAX_CHUNK_SCORES // n_cols``.

    Raises:
        ValueError: When the model lacks entity tables or they do not match its size.

    Example:
        >>> model = HybridMF(n_rows=2, n_cols=3, k=2)
        >>> model.set_entities(row_ids=["d1", "d2"], row_names=["Aspirin", "ibuprofen"],
        ...     col_ids=["a1", "a2", "a3"], col_names=["rash", "nausea", "pain"],
        ...     known_pairs=torch.tensor([[0, 1]]))
        >>> table = Ranker(model).rank_cols("aspirin", k=2)
        >>> table["drug_id"].tolist(), len(table), bool(table["known"].any())
        (['d1', 'd1'], 2, False)
    """

    def __init__(
        self, model: HybridMF, row_label: str = "drug", col_label: str = "adr", chunk_rows: int | None = None
    ) -> None:
        missing = [key for key in _ENTITY_KEYS if key not in model.entities]
        if missing:
            raise ValueError(
                f"the model is missing the entity tables {missing}: load it with load_model from a checkpoint "
                f"written by scripts/fit.py, or call model.set_entities({', '.join(_ENTITY_KEYS)})"
            )
        self.model = model.eval()
        self.row_label = row_label
        self.col_label = col_label
        entities = model.entities
        self.rows = _entity_table(entities["row_ids"], entities["row_names"], model.hparams.n_rows, "row")
        self.cols = _entity_table(entities["col_ids"], entities["col_names"], model.hparams.n_cols, "column")
        self.n_rows, self.n_cols = len(self.rows), len(self.cols)
        known = torch.as_tensor(entities["known_pairs"]).cpu().numpy()
        self.known = PositiveSet(known, self.n_rows, self.n_cols)
        if chunk_rows is None:
            chunk_rows = max(1, MAX_CHUNK_SCORES // self.n_cols)
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.chunk_rows = chunk_rows
        self._row_lookup = _NameLookup(self.rows, row_label)
        self._col_lookup = _NameLookup(self.cols, col_label)
        if model.hparams.loss != "bce":
            logger.warning(
                "the model was trained with the %s triplet loss, so its scores rank pairs but "
                "sigmoid(score) in the probability column is not a calibrated probability",
                model.hparams.loss,
            )

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device | None = None, **options: Any) -> Ranker:
        """Load a checkpoint with ``load_model`` and wrap it; ``options`` go to the constructor."""
        return cls(load_model(path, map_location), **options)

    # ----------------------------------------------------------------------------------
    # Lookup.

    def row_index(self, key: str) -> int:
        """Return the index of the row with this id or case-insensitive name.

        Raises:
            ValueError: When no row matches (the message suggests close matches), or a name
                is shared by several rows (the message lists their ids).
        """
        return self._row_lookup.index(key)

    def col_index(self, key: str) -> int:
        """Return the index of the column with this id or case-insensitive name.

        Raises:
            ValueError: As ``row_index``.
        """
        return self._col_lookup.index(key)

    # ----------------------------------------------------------------------------------
    # Scores.

    @torch.no_grad()
    def score_matrix(self, as_frame: bool = False) -> Tensor | pd.DataFrame:
        """Score every pair.

        Args:
            as_frame: Return a data frame indexed by row id with one column per column id.

        Returns:
            ``(R, C)`` float32 logits on the CPU, or the same values as a data frame.
        """
        scores = torch.cat([self._score_rows(rows) for rows in self._row_chunks()])  # (R, C)
        if not as_frame:
            return scores
        return pd.DataFrame(
            scores.numpy(),
            index=pd.Index(self.rows["id"], name=f"{self.row_label}_id"),
            columns=pd.Index(self.cols["id"], name=f"{self.col_label}_id"),
        )

    @torch.no_grad()
    def score_pairs(self, rows: str | Sequence[str], cols: str | Sequence[str]) -> pd.DataFrame:
        """Score pairs given by row and column ids or names.

        Args:
            rows: Row ids or names, or one of them for every column.
            cols: Column ids or names of the same length, or one for every row.

        Returns:
            One line per pair, in the given order, with the ids, names, ``score``,
            ``probability`` and ``known``.

        Raises:
            ValueError: When an entity is not found or the lengths differ.
        """
        rows = [rows] if isinstance(rows, str) else list(rows)
        cols = [cols] if isinstance(cols, str) else list(cols)
        if len(rows) == 1 and len(cols) > 1:
            rows = rows * len(cols)
        if len(cols) == 1 and len(rows) > 1:
            cols = cols * len(rows)
        if len(rows) != len(cols):
            raise ValueError(f"rows and cols must have the same length (or length 1), got {len(rows)} and {len(cols)}")
        row_index = torch.tensor([self.row_index(key) for key in rows], dtype=torch.int64)  # (P,)
        col_index = torch.tensor([self.col_index(key) for key in cols], dtype=torch.int64)  # (P,)
        scores = self._score_pairs(row_index, col_index)  # (P,)
        known = self.known.contains(row_index, col_index)  # (P,)
        return self._pair_table(row_index, col_index, scores, known=known)

    # ----------------------------------------------------------------------------------
    # Rankings of known entities.

    @torch.no_grad()
    def rank_cols(self, row: str, k: int | None = 20, include_known: bool = False) -> pd.DataFrame:
        """Rank the columns (ADRs) of one row (drug) by score.

        Args:
            row: The row's id or case-insensitive name.
            k: Lines to return; None for all.
            include_known: Keep the row's known associations, flagged ``known=True``.
                By default they are left out, so the ranking lists unknown pairs only.

        Returns:
            The top ``k`` pairs, highest score first, with ``rank`` 1, 2, ...

        Raises:
            ValueError: When the row is not found or ``k`` is not positive.
        """
        _check_top(k)
        index = torch.tensor([self.row_index(row)])  # (1,)
        scores = self._score_rows(index)[0]  # (C,)
        known = self.known.dense_rows(index)[0]  # (C,)
        cols = torch.arange(self.n_cols)
        keep = cols if include_known else cols[~known]
        order = _top(scores[keep], k)
        chosen = keep[order]
        return self._pair_table(index.expand(len(chosen)), chosen, scores[chosen], known=known[chosen], ranked=True)

    @torch.no_grad()
    def rank_rows(self, col: str, k: int | None = 20, include_known: bool = False) -> pd.DataFrame:
        """Rank the rows (drugs) of one column (ADR) by score.

        Args:
            col: The column's id or case-insensitive name.
            k: Lines to return; None for all.
            include_known: Keep the known associations, flagged ``known=True``.

        Returns:
            The top ``k`` pairs, highest score first, with ``rank`` 1, 2, ...

        Raises:
            ValueError: When the column is not found or ``k`` is not positive.
        """
        _check_top(k)
        index = self.col_index(col)
        rows = torch.arange(self.n_rows)
        cols = torch.full((self.n_rows,), index, dtype=torch.int64)  # (R,)
        scores = self._score_pairs(rows, cols)  # (R,)
        known = self.known.contains(rows, cols)  # (R,)
        keep = rows if include_known else rows[~known]
        order = _top(scores[keep], k)
        chosen = keep[order]
        return self._pair_table(chosen, cols[chosen], scores[chosen], known=known[chosen], ranked=True)

    @torch.no_grad()
    def rank_unknown_pairs(self, k: int | None = None) -> pd.DataFrame:
        """Rank every pair that is not a known association, over all rows and columns.

        Rows are scored in chunks of ``chunk_rows``. With ``k`` only the best ``k`` pairs
        are kept between chunks; with ``k=None`` the result has one line per unknown pair.
        Equal scores keep the row-major order of the pairs.

        Args:
            k: Lines to return; None for all.

        Returns:
            The pairs, highest score first, with ``rank`` 1, 2, ...

        Raises:
            ValueError: When ``k`` is not positive.
        """
        _check_top(k)
        kept_scores, kept_rows, kept_cols = torch.empty(0), torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64)
        pieces = []
        for rows in self._row_chunks():
            scores = self._score_rows(rows)  # (n, C)
            position, cols = torch.nonzero(~self.known.dense_rows(rows), as_tuple=True)  # row-major
            piece = (scores[position, cols], rows[position], cols)
            if k is None:
                pieces.append(piece)
                continue
            kept_scores, kept_rows, kept_cols = (torch.cat(pair) for pair in zip((kept_scores, kept_rows, kept_cols), piece))
            order = _top(kept_scores, k)
            kept_scores, kept_rows, kept_cols = kept_scores[order], kept_rows[order], kept_cols[order]
        if k is None:
            kept_scores, kept_rows, kept_cols = (torch.cat(parts) for parts in zip(*pieces))
            order = _top(kept_scores, None)
            kept_scores, kept_rows, kept_cols = kept_scores[order], kept_rows[order], kept_cols[order]
        return self._pair_table(kept_rows, kept_cols, kept_scores, known=None, ranked=True)

    # ----------------------------------------------------------------------------------
    # New molecules.

    @torch.no_grad()
    def score_molecules(self, smiles: Sequence[str]) -> Tensor:
        """Score every column for new molecules given by SMILES.

        A new molecule has no learned ID embedding, so only the row feature encoder
        describes it, exactly as for a drug that had no training pair.

        Args:
            smiles: One SMILES per molecule.

        Returns:
            ``(N, C)`` float32 logits on the CPU.

        Raises:
            ValueError: When the model cannot score new molecules (no row feature encoder,
                or no fingerprint among its row features), or a SMILES cannot be parsed.
        """
        featurizer = self._molecule_featurizer()
        smiles = [smiles] if isinstance(smiles, str) else list(smiles)
        if not smiles:
            raise ValueError("smiles is empty; give at least one SMILES")
        check_smiles(smiles)
        features = featurize_new_rows(smiles, featurizer)  # (N, d)
        expected = self.model.row_tower.feature_dim
        if features.shape[1] != expected:
            raise ValueError(
                f"the featurizer settings of the checkpoint describe {features.shape[1]} row features, "
                f"but the model's row encoder takes {expected}; the checkpoint is inconsistent"
            )
        features = torch.as_tensor(features, device=self.model.device)  # (N, d)
        return self.model.score_new_rows(features).float().cpu()  # (N, C)

    def rank_molecules(self, smiles: Sequence[str], k: int | None = 20, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Rank the columns (ADRs) of new molecules given by SMILES.

        Args:
            smiles: One SMILES per molecule.
            k: Lines per molecule; None for all.
            names: A name per molecule for the ``drug_name`` column; None for
                ``molecule 1``, ``molecule 2``, ...

        Returns:
            For each molecule in the given order, its top ``k`` columns with the columns
            ``drug_name``, ``smiles``, ``adr_id``, ``adr_name``, ``score``, ``probability``
            and ``rank``.

        Raises:
            ValueError: As ``score_molecules``, or when ``names`` has the wrong length or
                ``k`` is not positive.
        """
        _check_top(k)
        smiles = [smiles] if isinstance(smiles, str) else list(smiles)
        if names is None:
            names = [f"molecule {position + 1}" for position in range(len(smiles))]
        if len(names) != len(smiles):
            raise ValueError(f"names must have one entry per SMILES ({len(smiles)}), got {len(names)}")
        scores = self.score_molecules(smiles)  # (N, C)
        tables = []
        for position, text in enumerate(smiles):
            chosen = _top(scores[position], k)
            table = self._pair_table(None, chosen, scores[position, chosen], known=None, ranked=True)
            table.insert(0, "smiles", text)
            table.insert(0, f"{self.row_label}_name", names[position])
            tables.append(table)
        return pd.concat(tables, ignore_index=True)

    def _molecule_featurizer(self) -> dict[str, Any]:
        """Return the featurizer settings, or explain why this model cannot score a SMILES."""
        if self.model.row_tower.encoder is None:
            raise ValueError(
                f"this model has no {self.row_label} feature encoder (it was trained with --features none), "
                f"so it can only score the {self.n_rows} {self.row_label}s it learned an embedding for, "
                f"not a new molecule; train a model with --features fingerprints (or drug) to score SMILES"
            )
        featurizer = self.model.hparams.get("featurizer")
        if featurizer is None:
            raise ValueError(
                "the model has a row feature encoder but its checkpoint stores no featurizer settings, "
                "so a SMILES cannot be turned into its features; retrain it with scripts/fit.py"
            )
        # featurize_new_rows rejects a layout without a fingerprint block.
        return featurizer

    # ----------------------------------------------------------------------------------
    # Helpers.

    def _row_chunks(self) -> Iterator[Tensor]:
        for start in range(0, self.n_rows, self.chunk_rows):
            yield torch.arange(start, min(start + self.chunk_rows, self.n_rows))

    def _score_rows(self, rows: Tensor) -> Tensor:
        """Return the ``(n, C)`` float32 CPU scores of the rows ``(n,)`` via ``score_rows``."""
        return self.model.score_rows(rows.to(self.model.device)).float().cpu()

    def _score_pairs(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Return the ``(P,)`` float32 CPU scores of the pairs via ``score_pairs``, in chunks."""
        step = self.chunk_rows * self.n_cols
        pieces = [
            self.model.score_pairs(
                rows[start : start + step].to(self.model.device), cols[start : start + step].to(self.model.device)
            )
            for start in range(0, len(rows), step)
        ]
        return torch.cat(pieces).float().cpu() if pieces else torch.empty(0)  # (P,)

    def _pair_table(
        self, rows: Tensor | None, cols: Tensor, scores: Tensor, known: Tensor | None, ranked: bool = False
    ) -> pd.DataFrame:
        """Build the result table of pairs given by row and column indices (rows None: no row columns)."""
        columns: dict[str, Any] = {}
        if rows is not None:
            rows = rows.numpy()
            columns[f"{self.row_label}_id"] = self.rows["id"].to_numpy()[rows]
            columns[f"{self.row_label}_name"] = self.rows["name"].to_numpy()[rows]
        cols = cols.numpy()
        columns[f"{self.col_label}_id"] = self.cols["id"].to_numpy()[cols]
        columns[f"{self.col_label}_name"] = self.cols["name"].to_numpy()[cols]
        columns["score"] = scores.numpy()
        columns["probability"] = torch.sigmoid(scores).numpy()
        if ranked:
            columns["rank"] = np.arange(1, len(scores) + 1)
        if known is not None:
            columns["known"] = known.numpy()
        return pd.DataFrame(columns)


def check_smiles(smiles: Sequence[str], labels: Sequence[str] | None = None) -> None:
    """Check that every SMILES parses, naming the first one that does not.

    Args:
        smiles: SMILES strings.
        labels: Where each SMILES comes from, such as ``file:line``, for the message;
            None uses ``smiles[i]``.

    Raises:
        ValueError: ``"<label>: could not parse SMILES '...': <RDKit's reason>"``.

    Example:
        >>> check_smiles(["CCO", "c1ccccc1"])
        >>> check_smiles(["CCO", "C1CC"], labels=["a.csv:1", "a.csv:2"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: a.csv:2: could not parse SMILES 'C1CC': ...
    """
    if labels is None:
        labels = [f"smiles[{position}]" for position in range(len(smiles))]
    for label, text in zip(labels, smiles):
        try:
            # The fingerprint settings do not matter: only the parse can fail.
            featurize_smiles(text, radius=0, n_bits=1)
        except ValueError as error:
            raise ValueError(f"{label}: {error}") from None


def read_molecules(path: str | os.PathLike) -> pd.DataFrame:
    """Read new molecules from a text file of ``name,smiles`` lines.

    Blank lines are skipped, and a first line ``name,smiles`` is read as a header. Names
    must be unique and may not contain commas; SMILES never do.

    Args:
        path: The file to read.

    Returns:
        A data frame with the columns ``name``, ``smiles`` and ``line`` (1-based).

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: Naming the file and line of the first line that does not have two
            non-empty fields, a repeated name, or a SMILES that does not parse.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "new.csv"
        >>> _ = path.write_text("name,smiles\\nethanol,CCO\\n\\nbenzene,c1ccccc1\\n")
        >>> read_molecules(path).values.tolist()
        [['ethanol', 'CCO', 2], ['benzene', 'c1ccccc1', 4]]
    """
    table = read_fixed_columns(path, ["name", "smiles"], sep=",")
    first = table.iloc[0]
    if first["name"].casefold() == "name" and first["smiles"].casefold() == "smiles":
        table = table.iloc[1:].reset_index(drop=True)
    if table.empty:
        raise ValueError(f"{path}: the file has a header but no molecules; add lines of name,smiles")
    repeated = table[table["name"].duplicated(keep=False)]
    if not repeated.empty:
        name = repeated["name"].iloc[0]
        lines = repeated.loc[repeated["name"] == name, "line"].tolist()
        raise ValueError(f"{path}, line {lines[1]}: the name {name!r} already appears on line {lines[0]}; names must be unique")
    check_smiles(table["smiles"].tolist(), labels=[f"{path}, line {line}" for line in table["line"]])
    return table


def _entity_table(ids: Sequence[str], names: Sequence[str], expected: int, side: str) -> pd.DataFrame:
    if len(ids) != expected or len(names) != expected:
        raise ValueError(
            f"the checkpoint stores {len(ids)} {side} ids and {len(names)} names, but the model has "
            f"{expected} {side}s; the checkpoint is inconsistent"
        )
    return pd.DataFrame({"id": [str(value) for value in ids], "name": [str(value) for value in names]})


class _NameLookup:
    """Index of one side's entities by exact id, case-insensitive id and case-insensitive name."""

    def __init__(self, table: pd.DataFrame, label: str) -> None:
        self.table = table
        self.label = label
        self.exact = {value: position for position, value in enumerate(table["id"])}
        self.folded: dict[str, list[int]] = {}
        for column in ("id", "name"):
            for position, value in enumerate(table[column]):
                positions = self.folded.setdefault(value.strip().casefold(), [])
                if position not in positions:
                    positions.append(position)

    def index(self, key: str) -> int:
        if not isinstance(key, str):
            raise TypeError(f"a {self.label} must be given by its id or name as a string, got {type(key).__name__} {key!r}")
        if key in self.exact:
            return self.exact[key]
        positions = self.folded.get(key.strip().casefold(), [])
        if len(positions) == 1:
            return positions[0]
        if len(positions) > 1:
            matches = ", ".join(f"{self.table['id'][p]} ({self.table['name'][p]})" for p in positions)
            raise ValueError(f"{self.label} {key!r} matches several {self.label}s: {matches}; give the id instead")
        raise ValueError(f"{self.label} {key!r} not found: no {self.label} has this id or name. {self._suggest(key)}")

    def _suggest(self, key: str) -> str:
        close = difflib.get_close_matches(key.strip().casefold(), list(self.folded), n=_SUGGESTIONS, cutoff=0.6)
        if close:
            positions = [self.folded[match][0] for match in close]
            suggestions = [f"{self.table['name'][p]!r} ({self.table['id'][p]})" for p in positions]
            return f"Did you mean {', '.join(suggestions)}?"
        first = self.table.iloc[0]
        return (
            f"The model knows {len(self.table)} {self.label}s, with ids like {first['id']!r} and names "
            f"like {first['name']!r} (case-insensitive)."
        )


def _check_top(k: int | None) -> None:
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"k must be a positive integer or None (all), got {k!r}")


def _top(scores: Tensor, k: int | None) -> Tensor:
    """Return the positions of the ``k`` highest scores, highest first; ties keep input order."""
    order = torch.sort(scores, descending=True, stable=True).indices  # (n,)
    return order if k is None else order[:k]

"""Cross-validation protocols: k folds, a model trained per fold and the baselines, one evaluator.

Protocols, each a k-fold cross-validation seeded by ``config.seed``:

* ``warm``: the unique known pairs are cut into k folds. A fold trains on the other k - 1
  folds, and its candidates are every pair that is not a training positive, in every row.
  The fold's pairs are the positives to find.
* ``cold-drug``: the rows (drugs) are cut into k folds. Every pair of a held-out row is
  hidden from training, and all pairs of the held-out rows are the candidates.
* ``cold-adr``: the data set is transposed (:meth:`InteractionData.transpose`), so ADRs
  become rows and their feature tables become row features, and the ``cold-drug``
  machinery runs on it. The per-row metrics then rank drugs for each held-out ADR.
  ``row_auroc`` is the mean over ADRs of the AUROC of that ADR's ranking of drugs. The
  top-k metrics such as ``ndcg@k`` and ``precision@k`` look at the top k drugs of each
  ADR. The pooled ``auroc`` and ``aupr`` are unchanged by the transpose. The model options
  ``row_ids``, ``col_ids``, ``row_feature_l2`` and ``col_feature_l2`` are swapped with the
  data, so they keep naming drugs and ADRs.

No fold leaks into its own training. Everything fitted on data is fitted inside each fold
on the training part only: the model, anything :func:`hybridmf.training.build_model`
fits (such as feature scalers), and the statistics of every baseline (popularity counts,
kNN similarities, EASE weights). The fold's candidate mask excludes exactly its training
positives. Fingerprints for the ``feature_knn`` baseline are computed per molecule from
its SMILES, and no label enters them.

Model selection. The model of a fold is trained on an inner split of the fold's training
part (:func:`hybridmf.data.splits.inner_split`): ``config.val_fraction`` of the training
pairs (warm) or training rows (cold) is held out, and the checkpoint with the best inner
validation AUROC is scored on the test fold. With ``val_fraction == 0`` or
``select_epoch == "last"`` (a fixed epoch count, as the shipped defaults use) the model trains
``max_epochs`` epochs on the whole training part and the last epoch is scored. The test
fold never selects anything. The baselines have nothing to select and are fitted on the
whole training part, inner validation pairs included. So is the EASE part of a model
trained with ``blend="ease"``, after the checkpoint is selected.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from hybridmf.config import PROTOCOLS, FitConfig
from hybridmf.data.datamodule import RowChunks
from hybridmf.data.fingerprints import MISSING_COLUMN, morgan_fingerprints
from hybridmf.data.interactions import InteractionData
from hybridmf.data.sampling import PositiveSet
from hybridmf.data.splits import Split, inner_split, make_folds
from hybridmf.evaluation.baselines import BASELINES, Baseline, make_baseline
from hybridmf.evaluation.metrics import RankingEvaluator
from hybridmf.training import build_features, load_data, model_loss, train_split, update_evaluators

logger = logging.getLogger(__name__)

__all__ = [
    "MODEL",
    "PRECISION_KS",
    "FoldEvaluation",
    "ProtocolResult",
    "default_methods",
    "evaluate_fold",
    "fingerprint_features",
    "oriented_config",
    "protocol_folds",
    "run_protocol",
]

MODEL = "model"
# Cut-offs of the precision@k curve in the report.
PRECISION_KS = (1, 2, 3, 5, 10, 20, 50)
# Baselines that score a row from its own training positives. A cold row has none, so
# their fallback ranks it by popularity and they repeat the popularity baseline.
INTERACTION_BASELINES = ("row_knn", "column_knn", "ease")
# Rows per scoring chunk. A chunk's score matrix has chunk rows x columns entries.
EVAL_CHUNK_ROWS = 1024


def _split_kind(protocol: str) -> str:
    """Return the split kind of a protocol: ``"warm"`` or ``"cold"``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return "warm" if protocol == "warm" else "cold"


def protocol_folds(
    data: InteractionData, protocol: str, n_folds: int = 5, seed: int = 0
) -> tuple[InteractionData, list[Split]]:
    """Build the folds of a protocol.

    Args:
        data: The interaction data set.
        protocol: ``"warm"``, ``"cold-drug"`` or ``"cold-adr"``.
        n_folds: Number of folds, at least 2.
        seed: Seed of the fold assignment.

    Returns:
        The data set the folds index (``data`` itself, or its transpose for ``cold-adr``)
        and one :class:`Split` per fold, whose ``val_pairs`` are the fold's test positives
        and ``val_rows`` its evaluated rows.

    Raises:
        ValueError: If ``protocol`` is unknown or ``n_folds`` is out of range.

    Example:
        >>> import pandas as pd
        >>> data = InteractionData(
        ...     rows=pd.DataFrame({"id": ["d0", "d1", "d2"], "name": ["a", "b", "c"]}),
        ...     cols=pd.DataFrame({"id": ["a0", "a1"], "name": ["x", "y"]}),
        ...     pairs=np.array([[0, 0], [1, 1], [2, 0], [2, 1]]))
        >>> view, folds = protocol_folds(data, "cold-adr", n_folds=2)
        >>> view.n_rows, [fold.val_rows.tolist() for fold in folds]
        (2, [[0], [1]])
    """
    kind = _split_kind(protocol)
    view = data.transpose() if protocol == "cold-adr" else data
    return view, make_folds(view.pairs, view.n_rows, kind, n_folds, seed)


def default_methods(protocol: str, has_row_features: bool, has_model_features: bool = False) -> tuple[str, ...]:
    """Return the methods compared by default under a protocol.

    ``warm`` compares the model with every interaction baseline. The cold protocols leave
    out ``row_knn``, ``column_knn`` and ``ease``, which only repeat ``popularity`` for rows
    without training positives. They add ``feature_knn`` when the rows have SMILES, and
    ``feature_ridge`` when the model has row features.

    Args:
        protocol: ``"warm"``, ``"cold-drug"`` or ``"cold-adr"``.
        has_row_features: Whether the rows have SMILES for ``feature_knn``.
        has_model_features: Whether the model has row features for ``feature_ridge``.

    Returns:
        Method names, ``"model"`` first.

    Raises:
        ValueError: If ``protocol`` is unknown.

    Example:
        >>> default_methods("cold-drug", has_row_features=True)
        ('model', 'popularity', 'feature_knn')
    """
    if _split_kind(protocol) == "warm":
        return (MODEL, "popularity", *INTERACTION_BASELINES)
    feature_methods = (("feature_knn",) if has_row_features else ()) + (("feature_ridge",) if has_model_features else ())
    return (MODEL, "popularity", *feature_methods)


def fingerprint_features(data: InteractionData, radius: int = 2, n_bits: int = 2048) -> np.ndarray | None:
    """Compute Morgan fingerprints of the rows from their ``smiles`` column.

    Args:
        data: The data set. Its row table may have a ``smiles`` column.
        radius: Morgan radius.
        n_bits: Length of the bit vectors.

    Returns:
        ``(n_rows, n_bits)`` float32 0/1 fingerprints, all zero for a missing or
        unparseable SMILES, or None when the rows have no ``smiles`` column.

    Example:
        >>> import pandas as pd
        >>> data = InteractionData(
        ...     rows=pd.DataFrame({"id": ["d0", "d1"], "name": ["a", "b"], "smiles": ["C", ""]}),
        ...     cols=pd.DataFrame({"id": ["a0"], "name": ["x"]}), pairs=np.array([[0, 0]]))
        >>> fingerprint_features(data, n_bits=64).sum(axis=1).tolist()
        [1.0, 0.0]
    """
    if "smiles" not in data.rows.columns:
        return None
    smiles = pd.Series(data.rows["smiles"].to_numpy(), index=pd.Index(data.rows["id"]))
    table = morgan_fingerprints(smiles, radius=radius, n_bits=n_bits)
    return table.drop(columns=MISSING_COLUMN).to_numpy(dtype=np.float32, copy=True)  # (n_rows, n_bits)


@dataclass
class FoldEvaluation:
    """Metrics of one method on one test fold.

    Attributes:
        metrics: The keys of :meth:`RankingEvaluator.compute`.
        precision_at_k: Precision@k for each cut-off k requested.
        curves: Pooled ROC and precision-recall curves
            (:meth:`RankingEvaluator.pooled_curves`), or None when not requested.
    """

    metrics: dict[str, float]
    precision_at_k: dict[int, float]
    curves: dict[str, np.ndarray] | None = None


def evaluate_fold(
    score_rows: Callable[[torch.Tensor], torch.Tensor],
    split: Split,
    n_rows: int,
    n_cols: int,
    k: int = 10,
    threshold: float | None = None,
    precision_ks: Sequence[int] = PRECISION_KS,
    keep_curves: bool = False,
) -> FoldEvaluation:
    """Score the evaluated rows of a split once and compute every metric from the scores.

    The candidates of a row are all its pairs that are not in ``split.train_pairs``, and
    ``split.val_pairs`` are the positives to find.

    Args:
        score_rows: Maps ``(n,)`` row indices to ``(n, n_cols)`` scores.
        split: Training positives, test positives and evaluated rows.
        n_rows: Number of rows of the matrix.
        n_cols: Number of columns of the matrix.
        k: Cut-off of the main ranking metrics.
        threshold: Logit threshold of the accuracy, or None for scores that are not logits.
        precision_ks: Extra cut-offs at which precision@k is computed.
        keep_curves: Whether to compute the pooled ROC and precision-recall curves.

    Returns:
        The metrics, the precision@k values and, with ``keep_curves``, the curves.

    Example:
        >>> pairs = np.array([[0, 0], [0, 1], [1, 1]])
        >>> split = Split(pairs[:2], pairs[2:], np.array([1]))
        >>> score_rows = lambda rows: torch.tensor([[1.0, 0.5, 0.0]]).repeat(len(rows), 1)
        >>> result = evaluate_fold(score_rows, split, n_rows=2, n_cols=3, k=1, precision_ks=(1, 2))
        >>> result.metrics["row_auroc"], result.precision_at_k
        (0.5, {1: 0.0, 2: 0.5})
    """
    train = PositiveSet(split.train_pairs, n_rows, n_cols)
    held_out = PositiveSet(split.val_pairs, n_rows, n_cols)
    chunks = RowChunks(torch.as_tensor(split.val_rows, dtype=torch.int64), train, held_out, EVAL_CHUNK_ROWS)
    evaluator = RankingEvaluator(k=k, threshold=threshold, precision_ks=precision_ks)
    with torch.no_grad():
        update_evaluators(score_rows, chunks, [evaluator])
    metrics = evaluator.compute()
    precision = {cutoff: metrics.pop(f"precision@{cutoff}") for cutoff in evaluator.precision_ks if cutoff != k}
    if k in evaluator.precision_ks:
        precision[k] = metrics[f"precision@{k}"]
    curves = evaluator.pooled_curves() if keep_curves else None
    return FoldEvaluation(metrics, dict(sorted(precision.items())), curves)


@dataclass
class ProtocolResult:
    """Everything a cross-validation run measured.

    Attributes:
        protocol: The protocol name.
        n_folds: Number of folds.
        methods: Method names in the order they were run.
        results: One line per method and fold: ``method``, ``fold``, the evaluator's
            metrics, ``wall_seconds`` (fit or training plus scoring), ``epochs`` and
            ``selected_epoch`` (model only) and the fold sizes ``n_train_pairs``,
            ``n_test_pairs`` and ``n_test_rows``.
        precision_at_k: One line per method, fold and cut-off: ``method``, ``fold``,
            ``k``, ``precision``.
        curves: Pooled ROC and precision-recall curves of each method on fold
            ``curve_fold``.
        curve_fold: The fold the curves come from.
        training_logs: The Lightning ``metrics.csv`` of the model in each fold.
        selection: How the model's checkpoint was chosen, in words.
        eval_k: Cut-off k of the ranking metrics.
        data_summary: Name and size of the data set the folds index.
        wall_seconds: Total wall time of the run.
    """

    protocol: str
    n_folds: int
    methods: tuple[str, ...]
    results: pd.DataFrame
    precision_at_k: pd.DataFrame
    curves: dict[str, dict[str, np.ndarray]]
    curve_fold: int
    training_logs: list[Path]
    selection: str
    eval_k: int
    data_summary: dict[str, object] = field(default_factory=dict)
    wall_seconds: float = math.nan


def oriented_config(config: FitConfig, protocol: str) -> FitConfig:
    """Return the config to train with: the per-side options follow a transpose."""
    if protocol != "cold-adr":
        return config
    return dataclasses.replace(
        config,
        row_ids=config.col_ids,
        col_ids=config.row_ids,
        row_feature_l2=config.col_feature_l2,
        col_feature_l2=config.row_feature_l2,
    )


def baseline_factories(
    config: FitConfig, overrides: Mapping[str, Callable[[], Baseline]] | None
) -> dict[str, Callable[[], Baseline]]:
    """Return a constructor per baseline name.

    ``feature_knn`` compares fingerprints by Tanimoto similarity. The neighbour count and
    the EASE and ridge lambdas come from the ``knn_neighbors``, ``ease_l2`` and
    ``ridge_l2`` fields of an ``EvaluateConfig``, and from the baselines' defaults for a
    plain ``FitConfig``.
    """
    options: dict[str, dict[str, object]] = {name: {} for name in BASELINES}
    options["feature_knn"]["metric"] = "tanimoto"
    if hasattr(config, "knn_neighbors"):
        for name in ("row_knn", "column_knn", "feature_knn"):
            options[name]["n_neighbors"] = config.knn_neighbors
    if hasattr(config, "ease_l2"):
        options["ease"]["l2"] = config.ease_l2
    if hasattr(config, "ridge_l2"):
        options["feature_ridge"]["l2"] = config.ridge_l2
    factories = {
        name: (lambda name=name: make_baseline(name, **options[name])) for name in BASELINES
    }
    factories.update(overrides or {})
    return factories


def fit_baseline(
    method: str,
    factory: Callable[[], Baseline],
    config: FitConfig,
    view: InteractionData,
    split: Split,
    fingerprints: np.ndarray | None,
) -> Baseline:
    """Build the baseline ``method`` with ``factory`` and fit it on the training pairs of ``split``.

    ``feature_ridge`` regresses on the model's row features, standardized on the split's
    training rows, with one scale per source. ``feature_knn`` compares ``fingerprints``,
    and the other baselines ignore them.
    """
    baseline = factory()
    features = fingerprints
    if method == "feature_ridge":
        matrix, _ = build_features(config, view, split)
        baseline.blocks = [(entry["offset"], entry["width"]) for entry in matrix.layout]
        features = matrix.values
    return baseline.fit(split.train_pairs, view.n_rows, view.n_cols, features)


def _check_methods(
    methods: Sequence[str],
    factories: Mapping[str, Callable[[], Baseline]],
    has_row_features: bool,
    has_model_features: bool = True,
) -> tuple[str, ...]:
    """Validate the method names and return them as a tuple without repeats."""
    methods = tuple(dict.fromkeys(methods))
    for method in methods:
        if method != MODEL and method not in factories:
            raise ValueError(f"unknown method {method!r}; valid methods: {', '.join([MODEL, *factories])}")
    if "feature_knn" in methods and not has_row_features:
        raise ValueError(
            "method 'feature_knn' needs row features, but the rows have no 'smiles' column "
            "(under cold-adr the rows are ADRs); leave feature_knn out"
        )
    if "feature_ridge" in methods and not has_model_features:
        raise ValueError(
            "method 'feature_ridge' regresses on the row features of the model, but it has none; give them with "
            "--drug-sources, --features or --row-feature-files (under cold-adr: the ADR sources), or leave "
            "feature_ridge out"
        )
    return methods


def inner_fraction(config: FitConfig) -> float:
    """Return the share of a fold's training part held out to select the epoch: none with ``select_epoch`` last.

    Example:
        >>> inner_fraction(FitConfig(val_fraction=0.1, select_epoch="last"))
        0.0
    """
    return 0.0 if config.select_epoch == "last" else config.val_fraction


def _selection_text(config: FitConfig, protocol: str) -> str:
    """Describe in words how the model's checkpoint is chosen."""
    if inner_fraction(config) == 0:
        reason = "val_fraction 0" if config.val_fraction == 0 else "select_epoch last"
        return f"last epoch of {config.max_epochs}, trained on the whole training part of each fold ({reason})"
    unit = "pairs" if _split_kind(protocol) == "warm" else "rows"
    stopping = "" if config.patience is None else f", early stopping after {config.patience} epochs without improvement"
    return (
        f"best inner-validation AUROC over at most {config.max_epochs} epochs. The inner validation split "
        f"holds out {config.val_fraction:g} of the training {unit} of each fold (seed {config.seed}){stopping}"
    )


def run_protocol(
    config: FitConfig,
    protocol: str,
    n_folds: int = 5,
    methods: Sequence[str] | None = None,
    *,
    out_dir: str | Path | None = None,
    data: InteractionData | None = None,
    baselines: Mapping[str, Callable[[], Baseline]] | None = None,
    precision_ks: Sequence[int] = PRECISION_KS,
    curve_fold: int = 0,
) -> ProtocolResult:
    """Cross-validate the model and the baselines under one protocol.

    For each fold, the model is trained through :func:`hybridmf.training.train_split`,
    and the module docstring says which checkpoint is scored. Every baseline is fitted on
    the fold's training pairs. All of them score the test fold and are evaluated by the
    same :class:`RankingEvaluator` on the same candidate masks.

    Args:
        config: Options of the model and its training, as for ``scripts/fit.py``. Its
            ``split`` is ignored, ``val_fraction`` sizes the inner validation split,
            and ``seed`` seeds the folds, the inner split and training. The optional
            fields ``knn_neighbors`` and ``ease_l2`` of an ``EvaluateConfig`` set the
            baselines.
        protocol: ``"warm"``, ``"cold-drug"`` or ``"cold-adr"``.
        n_folds: Number of folds.
        methods: ``"model"`` and baseline names, or None for :func:`default_methods`.
        out_dir: Directory for each fold's checkpoints and training log, under
            ``fold-<i>/``. Defaults to ``config.out``, then
            ``runs/evaluate-<protocol>-<date>-<time>``.
        data: The data set, or None to load it as ``config`` says.
        baselines: Extra or replacement baseline constructors by method name, each
            returning an unfitted object with ``fit`` and ``score_rows`` like
            :class:`Baseline`.
        precision_ks: Cut-offs of the precision@k curve.
        curve_fold: Fold whose pooled ROC and precision-recall curves are kept.

    Returns:
        The per-fold results, curves and training logs.

    Raises:
        ValueError: If ``protocol``, ``n_folds``, ``methods`` or ``curve_fold`` is
            invalid.
    """
    started = time.perf_counter()
    _split_kind(protocol)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if isinstance(curve_fold, bool) or not isinstance(curve_fold, int) or not 0 <= curve_fold < n_folds:
        raise ValueError(f"curve_fold must be a fold index from 0 to {n_folds - 1}, got {curve_fold!r}")
    if out_dir is None:
        out_dir = config.out if config.out is not None else Path("runs") / time.strftime(f"evaluate-{protocol}-%Y%m%d-%H%M%S")
    out_dir = Path(out_dir)

    data = load_data(config) if data is None else data
    view, folds = protocol_folds(data, protocol, n_folds, config.seed)
    factories = baseline_factories(config, baselines)
    has_smiles, has_model_features = "smiles" in view.rows.columns, bool(view.row_features)
    if methods is None or len(methods) == 0:
        methods = default_methods(protocol, has_smiles, has_model_features)
    methods = _check_methods(methods, factories, has_smiles, has_model_features)
    row_features = None
    if "feature_knn" in methods:
        row_features = fingerprint_features(view, config.fingerprint_radius, config.fingerprint_bits)
    if MODEL in methods and protocol != "warm" and not view.row_features:
        entity = "ADR" if protocol == "cold-adr" else "drug"
        logger.warning(
            "%s without %s features: the held-out %ss have no trained embedding and no features, so the "
            "model gives all their pairs one score unless --bias adds a popularity prior",
            protocol,
            entity,
            entity,
        )

    train_config = oriented_config(config, protocol)
    # Triplet-trained and blended scores are not log-odds, so their accuracy at 0 is not meaningful.
    threshold = 0.0 if model_loss(config) == "bce" and config.blend == "none" else None
    records: list[dict[str, object]] = []
    precision_records: list[dict[str, object]] = []
    curves: dict[str, dict[str, np.ndarray]] = {}
    training_logs: list[Path] = []
    for fold, split in enumerate(folds):
        sizes = {
            "n_train_pairs": len(split.train_pairs),
            "n_test_pairs": len(split.val_pairs),
            "n_test_rows": len(split.val_rows),
        }
        logger.info(
            "%s fold %d/%d: %d training pairs, %d test pairs, %d evaluated rows",
            protocol, fold + 1, n_folds, sizes["n_train_pairs"], sizes["n_test_pairs"], sizes["n_test_rows"],
        )
        for method in methods:
            method_started = time.perf_counter()
            extra: dict[str, object] = {"epochs": math.nan, "selected_epoch": math.nan}
            if method == MODEL:
                fold_dir = out_dir / f"fold-{fold}"
                pl.seed_everything(config.seed, workers=True, verbose=False)
                inner = inner_split(split, view.n_rows, inner_fraction(config), config.seed)
                trained = train_split(train_config, view, inner, fold_dir, blend_pairs=split.train_pairs)
                training_logs.append(fold_dir / "logs" / "metrics.csv")
                extra = {"epochs": trained.epochs, "selected_epoch": trained.selected_epoch}
                score_rows, method_threshold = trained.model.score_rows, threshold
            else:
                baseline = fit_baseline(method, factories[method], config, view, split, row_features)
                score_rows, method_threshold = baseline.score_rows, None
            evaluation = evaluate_fold(
                score_rows, split, view.n_rows, view.n_cols, config.eval_k, method_threshold,
                precision_ks, keep_curves=fold == curve_fold,
            )
            seconds = time.perf_counter() - method_started
            records.append({"method": method, "fold": fold, **evaluation.metrics, "wall_seconds": seconds, **extra, **sizes})
            precision_records.extend(
                {"method": method, "fold": fold, "k": cutoff, "precision": value}
                for cutoff, value in evaluation.precision_at_k.items()
            )
            if evaluation.curves is not None:
                curves[method] = evaluation.curves
            k = config.eval_k
            logger.info(
                "%s fold %d/%d %s: auroc %.4f, aupr %.4f, ndcg@%d %.4f (%.1f s)",
                protocol, fold + 1, n_folds, method, evaluation.metrics["auroc"], evaluation.metrics["aupr"],
                k, evaluation.metrics[f"ndcg@{k}"], seconds,
            )

    return ProtocolResult(
        protocol=protocol,
        n_folds=n_folds,
        methods=methods,
        results=pd.DataFrame.from_records(records),
        precision_at_k=pd.DataFrame.from_records(precision_records),
        curves=curves,
        curve_fold=curve_fold,
        training_logs=training_logs,
        selection=_selection_text(config, protocol),
        eval_k=config.eval_k,
        data_summary={"name": view.name, "rows": view.n_rows, "columns": view.n_cols, "pairs": view.n_pairs},
        wall_seconds=time.perf_counter() - started,
    )

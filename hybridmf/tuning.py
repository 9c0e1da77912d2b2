"""Hyperparameter search on an inner validation split of one cross-validation fold's training part.

The test pairs of the fold are never seen: a trial trains on the inner training pairs and
is scored on the inner validation pairs, both carved from the fold's training part by
:func:`hybridmf.data.splits.inner_split`. A trial trains a fixed number of epochs
(``max_epochs`` is searched) and keeps the last one, so nothing else looks at the inner
validation pairs.

The objective is ``balanced`` by default: the mean over AUROC, AUPR and NDCG@k of the
trial's metric divided by the popularity baseline's metric on the same inner split. The
ratios put the three metrics on one scale, so the search does not trade ranking quality
for a small AUROC gain or the reverse. A single metric can be optimized instead.

Optuna (``pip install "hybridmf[tune]"``) drives the search. A study stored in an SQLite
file continues where it stopped when the same command runs again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import yaml

from hybridmf.config import FitConfig
from hybridmf.data.interactions import InteractionData
from hybridmf.data.io import write_atomic
from hybridmf.data.splits import Split, inner_split
from hybridmf.evaluation.protocols import (
    MODEL,
    baseline_factories,
    default_methods,
    evaluate_fold,
    fingerprint_features,
    fit_baseline,
    oriented_config,
    protocol_folds,
)
from hybridmf.training import load_data, train_split

logger = logging.getLogger(__name__)

OBJECTIVES = ("balanced", "baselines", "auroc", "aupr", "ndcg")
# Metrics that the balanced objective averages, as keys of RankingEvaluator.compute().
BALANCED_METRICS = ("auroc", "aupr", "ndcg@{k}")


@dataclass
class TuningData:
    """The data a study trains and scores on.

    Attributes:
        view: The data set the splits index (transposed for ``cold-adr``).
        split: The inner split: training pairs and validation pairs, both from the
            training part of one outer fold; the fold's test rows are excluded.
        reference: The popularity baseline's metrics on ``split``.
        baselines: The metrics on ``split`` of every baseline that ``scripts/evaluate.py``
            compares by default under the protocol, popularity included, by name.
    """

    view: InteractionData
    split: Split
    reference: dict[str, float]
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    def best_baselines(self, k: int) -> dict[str, float]:
        """Return the highest baseline value of each metric of the balanced objective."""
        names = [name.format(k=k) for name in BALANCED_METRICS]
        return {name: max(metrics[name] for metrics in self.baselines.values()) for name in names}


def tuning_data(
    config: FitConfig,
    protocol: str,
    data: InteractionData | None = None,
    n_folds: int = 5,
    fold: int = 0,
    val_fraction: float = 0.2,
) -> TuningData:
    """Carve the inner split of one fold's training part and score the popularity baseline on it.

    Args:
        config: Options of the runs; its data options load the data when ``data`` is None,
            and its seed seeds the folds and the inner split.
        protocol: ``"warm"``, ``"cold-drug"`` or ``"cold-adr"``.
        data: The data set, or None to load it from ``config``.
        n_folds: Number of outer folds, as in ``scripts/evaluate.py``.
        fold: The outer fold whose training part is searched on.
        val_fraction: Share of the fold's training pairs (warm) or rows (cold) held out
            as inner validation.

    Returns:
        The view, the inner split, the popularity reference and the metrics of the
        protocol's default baselines on the inner split.

    Raises:
        ValueError: When ``fold`` or ``val_fraction`` is out of range.
    """
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must lie in [0, {n_folds}), got {fold}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    data = load_data(config) if data is None else data
    view, folds = protocol_folds(data, protocol, n_folds, config.seed)
    split = inner_split(folds[fold], view.n_rows, val_fraction, config.seed)
    methods = default_methods(protocol, "smiles" in view.rows.columns, bool(view.row_features))
    factories = baseline_factories(config, None)
    fingerprints = None
    if "feature_knn" in methods:
        fingerprints = fingerprint_features(view, config.fingerprint_radius, config.fingerprint_bits)
    baselines = {}
    for method in methods:
        if method == MODEL:
            continue
        baseline = fit_baseline(method, factories[method], config, view, split, fingerprints)
        baselines[method] = evaluate_fold(baseline.score_rows, split, view.n_rows, view.n_cols, config.eval_k).metrics
    return TuningData(view, split, baselines["popularity"], baselines)


def objective_value(
    metrics: dict[str, float],
    reference: dict[str, float],
    objective: str,
    k: int,
    best_baselines: dict[str, float] | None = None,
) -> float:
    """Return the value a study maximizes.

    ``balanced`` is the mean of AUROC, AUPR and NDCG@k, each divided by ``reference``
    (popularity). ``baselines`` is the smallest of the three ratios to the best baseline
    value of that metric (``best_baselines``), so it grows only when the weakest metric
    gains against the strongest baseline on it; above 1, every metric beats every
    baseline. The others are one metric.

    Example:
        >>> objective_value({"auroc": 0.9, "aupr": 0.2, "ndcg@10": 0.3},
        ...                 {"auroc": 0.8, "aupr": 0.1, "ndcg@10": 0.3}, "balanced", 10)
        1.375
        >>> objective_value({"auroc": 0.9, "aupr": 0.2, "ndcg@10": 0.3}, {}, "baselines", 10,
        ...                 {"auroc": 0.8, "aupr": 0.25, "ndcg@10": 0.2})
        0.8
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    names = [name.format(k=k) for name in BALANCED_METRICS]
    if objective == "balanced":
        return float(np.mean([metrics[name] / reference[name] for name in names]))
    if objective == "baselines":
        if best_baselines is None:
            raise ValueError("objective 'baselines' needs the best baseline value of each metric")
        return float(min(metrics[name] / best_baselines[name] for name in names))
    name = f"ndcg@{k}" if objective == "ndcg" else objective
    return float(metrics[name])


def evaluate_config(config: FitConfig, protocol: str, tuning: TuningData) -> dict[str, float]:
    """Train on the inner training pairs for ``config.max_epochs`` epochs and score the inner validation pairs.

    Checkpoints go to a temporary folder that is removed afterwards.
    """
    train_config = dataclasses.replace(
        oriented_config(config, protocol), progress=False, resume=None, checkpoint_every_n_epochs=config.max_epochs
    )
    no_validation = dataclasses.replace(
        tuning.split,
        val_pairs=np.empty((0, 2), dtype=np.int64),
        val_rows=np.empty(0, dtype=np.int64),
        excluded_rows=tuning.split.cold_rows,
        kind="warm",
    )
    pl.seed_everything(config.seed, workers=True, verbose=False)
    folder = Path(tempfile.mkdtemp(prefix="hybridmf-trial-"))
    try:
        trained = train_split(train_config, tuning.view, no_validation, folder)
        return evaluate_fold(
            trained.model.score_rows, tuning.split, tuning.view.n_rows, tuning.view.n_cols, config.eval_k
        ).metrics
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# Options that :func:`suggest` can draw, in the order it draws them.
SEARCHED_OPTIONS = (
    "lr", "l2", "k", "max_epochs", "bias", "pos_weight", "neg_ratio", "blend_weight", "blend_ridge_l2",
    "row_feature_l2", "col_feature_l2",
)


def suggest(trial: Any, config: FitConfig, hold: Sequence[str] = ()) -> dict[str, Any]:
    """Draw one point of the search space that fits ``config``'s model family.

    Every family searches the learning rate, the embedding penalty, the latent size, the
    number of full-batch epochs and the bias terms. The weighted BCE loss adds the
    positive weight, triplet losses the negatives per positive, a blend its weight (and
    the ridge part its penalty), and a side with features the penalty of its encoder.

    Args:
        trial: An ``optuna.Trial``.
        config: The base configuration; its loss and features select the space.
        hold: Names of ``SEARCHED_OPTIONS`` that keep their value in ``config`` instead.

    Returns:
        Option names of ``FitConfig`` and their values.
    """
    drug_sources, adr_sources = config.feature_sources()
    draws: dict[str, Callable[[], Any]] = {
        "lr": lambda: trial.suggest_float("lr", 1e-3, 5e-2, log=True),
        "l2": lambda: trial.suggest_float("l2", 1e-4, 3.0, log=True),
        "k": lambda: trial.suggest_categorical("k", [32, 64, 128, 256, 512]),
        "max_epochs": lambda: trial.suggest_int("max_epochs", 20, 500, step=10),
        "bias": lambda: trial.suggest_categorical("bias", [True, False]),
    }
    if config.loss == "bce":
        draws["pos_weight"] = lambda: trial.suggest_float("pos_weight", 2.0, 50.0, log=True)
    else:
        draws["neg_ratio"] = lambda: trial.suggest_int("neg_ratio", 1, 16, log=True)
    if config.blend != "none":
        draws["blend_weight"] = lambda: trial.suggest_float("blend_weight", 0.0, 0.8)
    if config.blend == "ridge":
        draws["blend_ridge_l2"] = lambda: trial.suggest_float("blend_ridge_l2", 0.3, 30.0, log=True)
    if drug_sources or config.row_feature_files:
        draws["row_feature_l2"] = lambda: trial.suggest_float("row_feature_l2", 1e-5, 1.0, log=True)
    if adr_sources or config.col_feature_files:
        draws["col_feature_l2"] = lambda: trial.suggest_float("col_feature_l2", 1e-5, 1.0, log=True)
    return {name: draw() for name, draw in draws.items() if name not in hold}


def run_study(
    config: FitConfig,
    protocol: str,
    n_trials: int,
    *,
    objective: str = "balanced",
    storage: str | None = None,
    study_name: str | None = None,
    tuning: TuningData | Sequence[TuningData] | None = None,
    space: Callable[[Any, FitConfig], dict[str, Any]] | None = None,
    fixed: dict[str, Any] | None = None,
) -> Any:
    """Run (or continue) an Optuna study and return it.

    Args:
        config: The base configuration; each trial replaces the options that ``space``
            draws.
        protocol: The protocol whose inner split is searched on.
        n_trials: Trials to add to the study in this call.
        objective: One of ``OBJECTIVES``.
        storage: Optuna storage URL, such as ``sqlite:///runs/tune.db``; None keeps the
            study in memory.
        study_name: Name of the study in ``storage``; a stored study of that name is continued.
        tuning: The inner split, several inner splits (of several outer folds) whose
            objective values and metrics are averaged, or None to carve the split of fold 0
            with :func:`tuning_data`.
        space: Maps a trial and ``config`` to option values; None uses :func:`suggest`
            (``functools.partial(suggest, hold=...)`` holds some of its options).
        fixed: Plain values that define the search besides the space (the base options,
            the protocol, the folds). A stored study continues only when they are equal.

    Returns:
        The ``optuna.Study``. Each trial's user attributes hold its inner metrics.

    Raises:
        ImportError: When Optuna is not installed.
        ValueError: When a stored study of that name was run with other ``fixed`` values.
    """
    try:
        import optuna
    except ImportError as error:
        raise ImportError('tuning needs Optuna: pip install "hybridmf[tune]"') from error
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    tuning = tuning_data(config, protocol) if tuning is None else tuning
    splits = [tuning] if isinstance(tuning, TuningData) else list(tuning)
    space = suggest if space is None else space
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True)
    if fixed is not None:
        stored = study.user_attrs.get("fixed")
        if stored is not None and stored != fixed:
            changed = sorted(key for key in set(stored) | set(fixed) if stored.get(key) != fixed.get(key))
            raise ValueError(
                f"the stored study {study_name!r} in {storage} was run with other fixed options "
                f"({', '.join(changed)}); write to another --output, pass another --storage, or delete the stored study"
            )
        study.set_user_attr("fixed", fixed)
    # A continued study gets a fresh seed, so it does not draw its first points again.
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + len(study.trials))
    keys = [name.format(k=config.eval_k) for name in BALANCED_METRICS]

    def run_trial(trial: Any) -> float:
        values = space(trial, config)
        started = time.perf_counter()
        trial_config = dataclasses.replace(config, **values)
        results = [evaluate_config(trial_config, protocol, split) for split in splits]
        value = float(np.mean([
            objective_value(metrics, split.reference, objective, config.eval_k, split.best_baselines(config.eval_k))
            for metrics, split in zip(results, splits)
        ]))
        metrics = {key: float(np.mean([result[key] for result in results])) for key in keys}
        for key in keys:
            trial.set_user_attr(key, metrics[key])
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        logger.info(
            "trial %d: %s = %.4f (auroc %.4f, aupr %.4f, ndcg@%d %.4f) in %.0f s with %s",
            trial.number, objective, value, metrics["auroc"], metrics["aupr"], config.eval_k,
            metrics[f"ndcg@{config.eval_k}"], time.perf_counter() - started, values,
        )
        return value if math.isfinite(value) else float("-inf")

    reference = {key: float(np.mean([split.reference[key] for split in splits])) for key in keys}
    study.set_user_attr("reference", reference)
    best = {key: float(np.mean([split.best_baselines(config.eval_k)[key] for split in splits])) for key in keys}
    study.set_user_attr("best_baselines", best)
    study.optimize(run_trial, n_trials=n_trials)
    return study


def select_trial(study: Any, tolerance: float = 0.01, auroc_margin: float = 0.001) -> Any:
    """Return the trial with the highest AUROC among those within ``tolerance`` of the best objective value.

    Ratios to popularity move little for AUROC (about 1.1) and a lot for AUPR (3 or more),
    so AUROC weighs little in the balanced objective. Trials whose objective is within a
    relative ``tolerance`` of the best are treated as ties, and the tie goes to AUROC.
    AUROC values within ``auroc_margin`` of the highest one count as equal, and among
    those the higher objective value wins, so a tie never trades AUPR and NDCG for an
    AUROC gain smaller than the noise of an inner split.

    Args:
        study: A finished ``optuna.Study`` whose trials carry the ``auroc`` user attribute.
        tolerance: Relative distance to the best value that counts as a tie; 0 keeps the best trial.
        auroc_margin: Absolute AUROC difference that counts as equal among the ties.

    Returns:
        An ``optuna.trial.FrozenTrial``.
    """
    finished = [trial for trial in study.trials if trial.value is not None and "auroc" in trial.user_attrs]
    if not finished:
        raise ValueError(
            f"the study {study.study_name!r} has no finished trials to choose from; run it with --trials 1 or more"
        )
    best = max(trial.value for trial in finished)
    ties = [trial for trial in finished if trial.value >= best - tolerance * abs(best)]
    top_auroc = max(trial.user_attrs["auroc"] for trial in ties)
    level = [trial for trial in ties if trial.user_attrs["auroc"] >= top_auroc - auroc_margin]
    return max(level, key=lambda trial: trial.value)


def write_tuned_config(path: str | Path, base: dict[str, Any], trial: Any, header: str) -> dict[str, Any]:
    """Write the base options updated with a trial's values as a commented YAML file.

    Real values are rounded to three significant digits, which keeps the file readable;
    the searched objective is flat at that scale.

    Args:
        path: The YAML file to write (atomically).
        base: Options of the base configuration that the file repeats, such as the
            features and the loss.
        trial: The chosen trial, such as :func:`select_trial` returns.
        header: Comment lines placed above the options (without ``#``).

    Returns:
        The options written.
    """
    best = {name: float(f"{value:.3g}") if isinstance(value, float) else value for name, value in trial.params.items()}
    options = {**base, **best}
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    text = "\n".join(lines) + "\n" + yaml.safe_dump(options, sort_keys=False)
    write_atomic(Path(path), lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return options

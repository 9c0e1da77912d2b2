"""Tables and files of a cross-validation run: summaries, comparisons, report.md, CSV files, figures.

:func:`write_report` writes, under one directory and each file atomically:

* ``results.csv``: one line per method and fold (``ProtocolResult.results``).
* ``precision_at_k.csv``: one line per method, fold and cut-off k.
* ``run.json``: the command, configuration, environment, model selection and wall times.
* ``report.md``: mean ± sd per method and metric, the model against the best baseline,
  wall time per fold, the figures, the command and the environment.
* ``training_curves.png``, ``roc_pr.png`` and ``precision_at_k.png``.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hybridmf.config import FitConfig
from hybridmf.data.io import write_atomic
from hybridmf.evaluation.plots import plot_precision_at_k, plot_roc_pr, plot_training_curves
from hybridmf.evaluation.protocols import MODEL, ProtocolResult

logger = logging.getLogger(__name__)

__all__ = [
    "SUMMARY_METRICS",
    "compare_with_best_baseline",
    "environment_info",
    "format_summary",
    "summarize",
    "write_report",
]

# Columns of the summary table, where ``{k}`` is the run's cut-off.
SUMMARY_METRICS = ("auroc", "aupr", "row_auroc", "row_aupr", "ndcg@{k}", "hr@{k}", "precision@{k}", "recall@{k}", "mrr")
PACKAGES = ("hybridmf", "torch", "pytorch-lightning", "torchmetrics", "numpy", "pandas", "rdkit", "matplotlib")
PROTOCOL_TEXT = {
    "warm": "each fold holds out one of the equal parts of the known pairs, and every pair that is not a "
    "training positive is a candidate",
    "cold-drug": "each fold holds out whole drugs with all their pairs, and every pair of a held-out drug is a "
    "candidate",
    "cold-adr": "each fold holds out whole ADRs with all their pairs. The data set is transposed, so rows are "
    "ADRs and the per-row metrics (row_auroc, row_aupr, ndcg@k, hr@k, precision@k, recall@k, mrr) "
    "rank drugs for each held-out ADR",
}


def _metric_names(metrics: Sequence[str], k: int) -> list[str]:
    return [name.format(k=k) for name in metrics]


def summarize(results: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Compute the mean and sample standard deviation over folds of each method and metric.

    Args:
        results: One line per method and fold, with a ``method`` column and the metrics.
        metrics: Metric columns to summarize.

    Returns:
        One line per method in order of first appearance, with the columns
        ``(metric, "mean")`` and ``(metric, "sd")``. The sd is NaN for a single fold.

    Example:
        >>> table = pd.DataFrame({"method": ["a", "a", "b", "b"], "auroc": [0.7, 0.9, 0.5, 0.5]})
        >>> summarize(table, ["auroc"]).round(4).to_dict("index")
        {'a': {('auroc', 'mean'): 0.8, ('auroc', 'sd'): 0.1414}, 'b': {('auroc', 'mean'): 0.5, ('auroc', 'sd'): 0.0}}
    """
    methods = list(dict.fromkeys(results["method"]))
    grouped = results.groupby("method", sort=False)[list(metrics)]
    summary = pd.concat({"mean": grouped.mean(), "sd": grouped.std(ddof=1)}, axis=1)  # (methods, 2 * metrics)
    summary = summary.swaplevel(axis=1)[[(name, stat) for name in metrics for stat in ("mean", "sd")]]
    return summary.loc[methods]


def _mean_sd(mean: float, sd: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "n/a"
    if math.isnan(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def format_summary(results: pd.DataFrame, metrics: Sequence[str], digits: int = 3) -> str:
    """Format the mean ± sd of each method and metric as a Markdown table.

    Args:
        results: As :func:`summarize`.
        metrics: Metric columns, one table column each.
        digits: Decimal places.

    Returns:
        The table, one line per method, without a trailing newline.

    Example:
        >>> table = pd.DataFrame({"method": ["a", "a"], "auroc": [0.7, 0.9]})
        >>> print(format_summary(table, ["auroc"]))
        | method | auroc |
        |---|---|
        | a | 0.800 ± 0.141 |
    """
    summary = summarize(results, metrics)
    lines = ["| method | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for method, line in summary.iterrows():
        cells = [_mean_sd(line[(name, "mean")], line[(name, "sd")], digits) for name in metrics]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_with_best_baseline(results: pd.DataFrame, metrics: Sequence[str], model: str = MODEL) -> list[str]:
    """Say for each metric whether the model's mean beats the best baseline's mean.

    The best baseline is the one with the highest mean. The sentence also counts the
    folds in which the model scores higher than that baseline, a paired view of the
    same numbers. Higher is better for every metric compared.

    Args:
        results: As :func:`summarize`, with a ``fold`` column.
        metrics: Metrics to compare.
        model: Method name of the model.

    Returns:
        One Markdown list item per metric, or an empty list when the model or every
        baseline is missing.

    Example:
        >>> table = pd.DataFrame({"method": ["model", "model", "pop", "pop"], "fold": [0, 1, 0, 1],
        ...                       "auroc": [0.8, 0.9, 0.82, 0.84]})
        >>> compare_with_best_baseline(table, ["auroc"])
        ['- auroc: yes, the model (0.850 ± 0.071) beats the best baseline, pop (0.830 ± 0.014), by 0.020, and is higher in 1 of 2 folds.']
    """
    methods = list(dict.fromkeys(results["method"]))
    baselines = [method for method in methods if method != model]
    if model not in methods or not baselines:
        return []
    summary = summarize(results, metrics)
    by_fold = results.pivot(index="fold", columns="method")
    lines = []
    for name in metrics:
        means = summary[(name, "mean")]
        best = means[baselines].idxmax() if means[baselines].notna().any() else baselines[0]
        difference = means[model] - means[best]
        if math.isnan(difference):
            lines.append(f"- {name}: not comparable, because a mean is undefined.")
            continue
        wins = int((by_fold[(name, model)] > by_fold[(name, best)]).sum())
        verdict = "yes, the model" if difference > 0 else "no, the model"
        relation = "beats" if difference > 0 else "trails"
        model_text = _mean_sd(means[model], summary.loc[model, (name, "sd")])
        best_text = _mean_sd(means[best], summary.loc[best, (name, "sd")])
        lines.append(
            f"- {name}: {verdict} ({model_text}) {relation} the best baseline, {best} ({best_text}), "
            f"by {abs(difference):.3f}, and is higher in {wins} of {len(by_fold)} folds."
        )
    return lines


def _blend_text(config: dict[str, Any]) -> str:
    """Return the blend part of the report's model line, empty without a blend."""
    blend = config.get("blend", "none")
    if blend == "none":
        return ""
    return f", blended with {blend} ({config.get('blend_mode', 'rank')} mode, weight {config.get('blend_weight'):g})"


def threads_text(count: int) -> str:
    """Return ``"1 torch thread"`` or ``"N torch threads"``."""
    return f"{count} torch thread" + ("" if count == 1 else "s")


def environment_info() -> dict[str, Any]:
    """Describe the software and hardware of this process.

    Returns:
        ``python``, ``platform``, ``cpu`` (model name where ``/proc/cpuinfo`` gives it),
        ``logical_cpus``, ``torch_threads``, ``gpu`` (name or ``"none"``) and
        ``packages`` (installed version of each package in ``PACKAGES``).

    Example:
        >>> sorted(environment_info())
        ['cpu', 'gpu', 'logical_cpus', 'packages', 'platform', 'python', 'torch_threads']
    """
    packages = {}
    for package in PACKAGES:
        try:
            packages[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            packages[package] = "not installed"
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "packages": packages,
    }


def _cpu_model() -> str:
    """Return the CPU model name from ``/proc/cpuinfo``, else ``platform.processor()``."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _wall_time_table(results: pd.DataFrame) -> str:
    """Format the wall seconds of each method (columns) in each fold (lines) as Markdown."""
    seconds = results.pivot(index="fold", columns="method", values="wall_seconds")
    seconds = seconds[list(dict.fromkeys(results["method"]))]
    lines = ["| fold | " + " | ".join(seconds.columns) + " | total |", "|---|" + "---|" * (len(seconds.columns) + 1)]
    for fold, line in seconds.iterrows():
        lines.append(f"| {fold} | " + " | ".join(f"{value:.1f}" for value in line) + f" | {line.sum():.1f} |")
    return "\n".join(lines)


def _curve_labels(result: ProtocolResult) -> dict[str, str]:
    """Return legend labels with each method's pooled AUROC and AUPR on the curve fold."""
    fold = result.results[result.results["fold"] == result.curve_fold].set_index("method")
    return {
        method: f"{method} (AUROC {fold.loc[method, 'auroc']:.3f}, AUPR {fold.loc[method, 'aupr']:.3f})"
        for method in result.curves
    }


def _write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def _write_csv(path: Path, table: pd.DataFrame) -> Path:
    return write_atomic(path, lambda temporary: table.to_csv(temporary, index=False))


def _figures(result: ProtocolResult, out_dir: Path) -> dict[str, Path]:
    """Draw the figures that the result has data for and return their paths by name."""
    title = f"{result.protocol}, fold {result.curve_fold}"
    figures = {}
    logs = [log for log in result.training_logs if log.is_file()]
    if logs:
        figures["training_curves"] = plot_training_curves(logs, out_dir / "training_curves.png")
    if result.curves:
        figures["roc_pr"] = plot_roc_pr(result.curves, out_dir / "roc_pr.png", _curve_labels(result), title)
    if len(result.precision_at_k) > 0:
        figures["precision_at_k"] = plot_precision_at_k(
            result.precision_at_k, out_dir / "precision_at_k.png",
            f"Precision@k, {result.protocol}, mean ± sd over {result.n_folds} folds",
        )
    return figures


def render_report(result: ProtocolResult, run: Mapping[str, Any], figures: Mapping[str, Path]) -> str:
    """Render ``report.md`` from a result and the run description that ``run.json`` stores.

    Args:
        result: The cross-validation result.
        run: The content of ``run.json``: ``command``, ``config``, ``environment``.
        figures: Figure paths by name, linked relative to the report.

    Returns:
        The Markdown text.
    """
    metrics = _metric_names(SUMMARY_METRICS, result.eval_k)
    data = result.data_summary
    config = run["config"]
    environment = run["environment"]
    lines = [
        f"# Cross-validation: {result.protocol}, {result.n_folds} folds",
        "",
        f"Data: {data.get('name')}, {data.get('rows')} rows × {data.get('columns')} columns, "
        f"{data.get('pairs')} known pairs. Protocol `{result.protocol}`: {PROTOCOL_TEXT[result.protocol]}.",
        "",
        f"Model: `--features {config['features']} --loss {config['loss']}`, k = {config['k']}, head "
        f"{config['head']}, optimizer {config['optimizer']} (lr {config['lr']:g}), batch size "
        f"{config['batch_size']}{_blend_text(config)}. Checkpoint: {result.selection}. Every other option is in "
        "`run.json`.",
        "",
        "Pooled `auroc` and `aupr` rank all candidate pairs of a fold together. The `row_` metrics and the "
        f"top-{result.eval_k} metrics are means over rows with a held-out positive. Baselines are fitted on "
        "each fold's training pairs only.",
        "",
        f"## Mean ± sd over {result.n_folds} folds",
        "",
        format_summary(result.results, metrics),
        "",
        "## Model against the best baseline",
        "",
        *(compare_with_best_baseline(result.results, metrics) or ["The run has no model or no baseline to compare."]),
        "",
        "## Wall time per fold (seconds)",
        "",
        "Model: training plus scoring. Baselines: fitting plus scoring.",
        "",
        _wall_time_table(result.results),
        "",
    ]
    if MODEL in result.methods:
        epochs = result.results[result.results["method"] == MODEL][["fold", "epochs", "selected_epoch"]]
        chosen = ", ".join(
            f"fold {int(line.fold)}: {int(line.selected_epoch)} of {int(line.epochs)}" for line in epochs.itertuples()
        )
        lines += [f"Selected epoch of the model: {chosen}.", ""]
    if figures:
        lines += ["## Figures", ""]
        captions = {
            "training_curves": "Training loss and inner validation AUROC per epoch, one line per fold.",
            "roc_pr": f"Pooled ROC and precision-recall curves on fold {result.curve_fold}.",
            "precision_at_k": "Precision@k against k, mean ± sd over folds.",
        }
        for name, path in figures.items():
            lines += [f"![{name}]({Path(path).name})", "", captions.get(name, ""), ""]
    packages = ", ".join(f"{name} {version}" for name, version in environment["packages"].items())
    lines += [
        "## Run",
        "",
        "```bash",
        run["command"],
        "```",
        "",
        f"- Seed: {config['seed']} (folds, inner split, initialization, batch order).",
        f"- Hardware: {environment['cpu']}, {environment['logical_cpus']} logical CPUs, "
        f"{threads_text(environment['torch_threads'])}, GPU: {environment['gpu']}, {environment['platform']}.",
        f"- Software: Python {environment['python']}, {packages}.",
    ]
    if run.get("git_commit"):
        lines.append(f"- Code: git commit {run['git_commit']}.")
    lines += [f"- Total wall time: {result.wall_seconds:.0f} s.", ""]
    return "\n".join(lines)


def write_report(
    result: ProtocolResult,
    out_dir: str | Path,
    config: FitConfig,
    command: str,
    git_commit: str | None = None,
) -> dict[str, Path]:
    """Write the CSV files, ``run.json``, the figures and ``report.md`` of a run.

    Args:
        result: The cross-validation result.
        out_dir: The output directory.
        config: The configuration of the run, stored in ``run.json``.
        command: The command line that produced the run, quoted for a shell.
        git_commit: The code version, if known.

    Returns:
        The written files by name: ``results``, ``precision_at_k``, ``run``, ``report`` and
        one entry per figure.
    """
    out_dir = Path(out_dir)
    results = result.results.assign(protocol=result.protocol)
    written = {
        "results": _write_csv(out_dir / "results.csv", results),
        "precision_at_k": _write_csv(out_dir / "precision_at_k.csv", result.precision_at_k),
    }
    run = {
        "command": command,
        "git_commit": git_commit,
        "protocol": result.protocol,
        "n_folds": result.n_folds,
        "methods": list(result.methods),
        "selection": result.selection,
        "data": result.data_summary,
        "wall_seconds": round(result.wall_seconds, 2),
        "config": config.to_dict(),
        "environment": environment_info(),
    }
    written["run"] = _write_text(out_dir / "run.json", json.dumps(run, indent=2, default=_plain) + "\n")
    figures = _figures(result, out_dir)
    written.update(figures)
    written["report"] = _write_text(out_dir / "report.md", render_report(result, run, figures))
    logger.info("wrote %s and %d figures to %s", "report.md, results.csv, run.json", len(figures), out_dir)
    return written


def _plain(value: Any) -> Any:
    """Convert numpy scalars for ``json.dumps``."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a value of type {type(value).__name__} in run.json")

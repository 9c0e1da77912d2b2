"""Search hyperparameters on an inner validation split and write the best configuration as YAML.

The trials train on part of one outer fold's training pairs and are scored on the rest of
them. The fold's test pairs are never used. The study is stored in runs/tune/ (or in
--storage), so the same command continues it, and --trials 0 only rewrites the output
from the stored trials.

Examples:
    python scripts/tune.py --protocol warm --trials 40 --output configs/default-warm.yaml \\
        --data-dir ../shared/data/mef
    python scripts/tune.py --protocol cold-drug --drug-sources atc --row-ids false \\
        --trials 40 --output configs/default-new-drug.yaml
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from hybridmf.config import FitConfig, TuneConfig, parse_config, run_command
from hybridmf.training import load_data
from hybridmf.tuning import (
    BALANCED_METRICS,
    SEARCHED_OPTIONS,
    run_study,
    select_trial,
    suggest,
    tuning_data,
    write_tuned_config,
)

# Options that describe where data and outputs live or how the machine runs, not the model.
NOT_MODEL_OPTIONS = {"data_dir", "out", "resume", "progress", "threads", "accelerator", "devices", "strategy", "num_nodes"}


def base_options(config: TuneConfig) -> dict:
    """Return the FitConfig options of ``config`` that differ from the defaults, model options only."""
    defaults = FitConfig()
    options = {}
    for item in dataclasses.fields(FitConfig):
        value = getattr(config, item.name)
        if item.name not in NOT_MODEL_OPTIONS and value != getattr(defaults, item.name):
            options[item.name] = list(value) if isinstance(value, tuple) else value
    return options


def main(argv: list[str] | None = None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    argv = sys.argv[1:] if argv is None else list(argv)
    config = parse_config(argv, TuneConfig, description=__doc__.splitlines()[0])
    unknown = sorted(set(config.hold) - set(SEARCHED_OPTIONS))
    if unknown:
        raise ValueError(
            f"--hold takes options that the search draws ({', '.join(SEARCHED_OPTIONS)}), got {', '.join(unknown)}"
        )
    if not 0 < config.inner_val_fraction < 1:
        raise ValueError(f"--inner-val-fraction must lie in (0, 1), got {config.inner_val_fraction}")
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    fit_options = {item.name: getattr(config, item.name) for item in dataclasses.fields(FitConfig)}
    base = FitConfig(**{**fit_options, "progress": False})
    output = Path(config.output)
    storage = Path(config.storage or Path("runs") / "tune" / f"{output.stem}.db")
    storage.parent.mkdir(parents=True, exist_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()

    data = load_data(base)
    tuning = [
        tuning_data(base, config.protocol, data, n_folds=config.folds, fold=fold, val_fraction=config.inner_val_fraction)
        for fold in range(config.fold, config.fold + config.inner_folds)
    ]
    study = run_study(
        base,
        config.protocol,
        config.trials,
        objective=config.objective,
        storage=f"sqlite:///{storage}",
        study_name=f"{config.protocol}-{output.stem}",
        tuning=tuning,
        space=functools.partial(suggest, hold=config.hold),
        fixed={
            **base_options(config),
            "protocol": config.protocol,
            "folds": config.folds,
            "fold": config.fold,
            "inner_folds": config.inner_folds,
            "inner_val_fraction": config.inner_val_fraction,
            "objective": config.objective,
            # Only a search with held options records them, so older stored studies still continue.
            **({"hold": sorted(config.hold)} if config.hold else {}),
        },
    )
    best = select_trial(study, config.tolerance)
    k = config.eval_k
    keys = [name.format(k=k) for name in BALANCED_METRICS]
    found = ", ".join(f"{key} {best.user_attrs[key]:.4f}" for key in keys)
    reference = ", ".join(f"{key} {study.user_attrs['reference'][key]:.4f}" for key in keys)
    best_baselines = ", ".join(f"{key} {value:.4f}" for key, value in study.user_attrs["best_baselines"].items())
    folds = list(range(config.fold, config.fold + config.inner_folds))
    searched = f"outer fold {folds[0]} of {config.folds}" if len(folds) == 1 else (
        f"outer folds {', '.join(map(str, folds))} of {config.folds}, averaged"
    )
    splits = "an inner split" if len(folds) == 1 else "inner splits"
    header = "\n".join(
        [
            f"Tuned by scripts/tune.py for the {config.protocol} protocol. Command:",
            f"  python scripts/tune.py {shlex.join(argv)}",
            f"Search: {len(study.trials)} trials (TPE, seed {config.seed}) on {splits} of the training part of",
            f"{searched} ({config.inner_val_fraction:g} held out in each); objective {config.objective}.",
            f"Chosen trial {best.number} ({config.objective} {best.value:.4f}, the highest AUROC within "
            f"{config.tolerance:g} of the best value {study.best_value:.4f}): {found}.",
            f"Popularity on the same split: {reference}.",
            f"Best baseline per metric on the same split: {best_baselines}.",
            f"Finished {time.strftime('%Y-%m-%d')} on {platform.machine()} {platform.system()}, "
            f"{time.time() - started:.0f} s for this call.",
        ]
    )
    # Trials train a fixed number of epochs and keep the last one, so the file does too.
    base = {**base_options(config), "select_epoch": "last", "val_every_n_epochs": 50, "checkpoint_every_n_epochs": 50}
    options = write_tuned_config(output, base, best, header)
    print(f"chosen trial {best.number}: {config.objective} {best.value:.4f} ({found}); popularity: {reference}")
    print(f"wrote {output}: {options}")
    return study


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:], "tune.py"))

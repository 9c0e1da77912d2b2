"""Train a hybridmf model and write its checkpoints and validation metrics.

Without --config, the shipped default configuration is applied: configs/default-warm.yaml
for --split warm (known drugs) and configs/default-new-drug.yaml for --split cold (new
drugs). Flags override it; --config configs/keras-original.yaml reproduces the original
Keras prototype, and --config none keeps the built-in option defaults.

Examples:
    python scripts/fit.py --features none --data-dir ../shared/data/mef
    python scripts/fit.py --config configs/keras-original.yaml --max-epochs 5
    python scripts/fit.py --interactions pairs.csv --rows drugs.csv --cols adrs.csv
    python scripts/fit.py --config configs/own-data-example.yaml
"""

from __future__ import annotations

import logging
import sys

from hybridmf.config import FitConfig, default_fit_config, parse_config, run_command
from hybridmf.training import run_fit


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    description = (
        f"{__doc__.splitlines()[0]} Without --config, configs/default-warm.yaml applies (configs/default-new-drug.yaml "
        "with --split cold) and overrides the defaults listed below; --config none keeps them."
    )
    config = parse_config(argv, FitConfig, description=description, default_config=default_fit_config)
    metrics = run_fit(config)
    if not metrics:
        # Processes other than process 0 of a distributed run return no metrics.
        return metrics
    width = max(len(name) for name in metrics)
    print()
    for name, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown}")
    return metrics


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:], "fit.py"))

"""Cross-validate the model and the baselines under one protocol and write a report.

Without --config, the protocol's shipped default configuration is evaluated
(configs/default-warm.yaml for warm, configs/default-new-drug.yaml for cold-drug); flags
override it, and --config none keeps the built-in option defaults.

Writes DIR/report.md, DIR/results.csv (one line per method and fold),
DIR/precision_at_k.csv, DIR/run.json, the figures DIR/*.png and, per fold, the model's
checkpoints and training log under DIR/fold-<i>/.

Examples:
    python scripts/evaluate.py --protocol warm --folds 5 --data-dir ../shared/data/mef --out runs/cv-warm
    python scripts/evaluate.py --protocol cold-drug --methods popularity feature_knn --out runs/cv-cold
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

from hybridmf.config import EvaluateConfig, default_evaluate_config, parse_config, run_command
from hybridmf.evaluation.protocols import ProtocolResult, run_protocol
from hybridmf.evaluation.report import SUMMARY_METRICS, format_summary, write_report

REPOSITORY = Path(__file__).resolve().parents[1]


def git_commit() -> str | None:
    """Return the commit of this checkout, with ``-dirty`` for uncommitted changes, or None."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPOSITORY), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(REPOSITORY), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if status else commit


def main(argv: list[str] | None = None) -> ProtocolResult:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    description = (
        f"{__doc__.splitlines()[0]} Without --config, the protocol's shipped default applies "
        "(configs/default-warm.yaml, configs/default-new-drug.yaml) and overrides the defaults listed below."
    )
    config = parse_config(argv, EvaluateConfig, description=description, default_config=default_evaluate_config)
    out_dir = Path(config.out) if config.out is not None else Path("runs") / time.strftime(
        f"evaluate-{config.protocol}-%Y%m%d-%H%M%S"
    )
    result = run_protocol(config, config.protocol, config.folds, tuple(config.methods) or None, out_dir=out_dir)
    command = shlex.join(["python", "scripts/evaluate.py", *argv])
    written = write_report(result, out_dir, config, command, git_commit())

    metrics = [name.format(k=config.eval_k) for name in SUMMARY_METRICS]
    print()
    print(format_summary(result.results, metrics))
    print(f"\nwrote {written['report']}")
    return result


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:], "evaluate.py"))

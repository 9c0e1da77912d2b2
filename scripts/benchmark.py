"""Measure the training speed and memory of hybridmf on MEF and on synthetic implicit data.

Each case runs in a subprocess of its own, so that its peak resident memory is its own.
The script prints a table and writes ``results.json`` and ``results.md`` to ``--out``.

Cases on MEF's full 746 × 817 grid (dot head, k = 5, weighted BCE, RMSprop):

* ``lightning``: ``HybridMF`` trained by a Lightning ``Trainer`` on ``InteractionDataModule``
  batches, at batch sizes 2000 (the original Keras prototype's), 20000 and the full grid;
* ``plain``: the same model and loss in a plain PyTorch loop over the same index tensors;
* ``naive``: a per-pair ``Dataset`` and ``DataLoader(batch_size=2000, shuffle=True)``;
* ``full-batch-step``: one step over the whole grid;
* ``to-auroc``: Lightning runs that validate every epoch (batch 2000, learning rate
  1e-3) or every 10 epochs (full grid, learning rate 0.03). Each is timed until the
  validation AUROC first reaches ``--target-auroc``, validations included;
* ``config``: training with the options of ``--config`` (default
  ``configs/default-warm.yaml``, skipped when the file is missing), read as
  ``scripts/fit.py --config`` reads it, with the benchmark's Trainer and with the one
  ``scripts/fit.py`` builds (CSV log and checkpoints), without validation.

All MEF cases except ``config`` train the original Keras prototype's model
(``configs/keras-original.yaml``). The cases of the two speed targets run ``--repeats``
times, in turns: Lightning and the plain loop at batch 2000, and the ``config`` cases.
The report gives each target ratio as the median of the ratios within a turn. The
targets are Lightning at most 1.5 times the plain loop's epoch, and the default config
at most a tenth of the Keras-equivalent epoch: the plain loop at batch 2000 measured
in the same run, and the Keras prototype's own 0.70 s per epoch, a reference figure
that this script does not measure because TensorFlow is not a dependency.

Cases on synthetic matrices with power-law row and column popularity
(``hybridmf.data.synthetic.powerlaw_pairs``) train the dot head with ``--synthetic-k``
factors. They cover sampled BCE (``--neg-ratio`` negatives per positive), BPR triplets,
and full-grid BCE where the grid has at most ``--max-grid`` pairs. The BPR and ALS of the
``implicit`` library run beside them when it is importable; it is not a dependency of
hybridmf.

An epoch's time includes building its examples (the shuffle and the negative draws).
MEF cases train one epoch more than ``--epochs`` and report the median of the others,
because a Lightning run builds the first epoch's examples before its clock starts. The
synthetic cases time that first build on its own and add it to the first epoch.
Throughput counts the examples of an epoch: labelled pairs for BCE, triplets for BPR and
positives for ``implicit``. Cases run on the CPU, and also on the GPU when
``torch.cuda.is_available()``.

Usage:
    python scripts/benchmark.py                          # MEF and the small synthetic size
    python scripts/benchmark.py --no-mef --sizes large --synthetic-batch-size 1048576
    python scripts/benchmark.py --size medium=300000x50000x6000000 --sizes medium
    python scripts/benchmark.py --quick --out /tmp/bench  # tiny data, a few seconds per case
    python scripts/benchmark.py --sizes "" --threads 1 --only lightning,plain,config  # the targets
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import importlib.util
import io
import json
import logging
import math
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from hybridmf.config import FitConfig, load_yaml, parse_config
from hybridmf.data.datamodule import EpochBatches, GridBatch, InteractionDataModule
from hybridmf.data.interactions import InteractionData
from hybridmf.data.io import write_atomic
from hybridmf.data.mef import load_mef
from hybridmf.data.sampling import PositiveSet, full_grid_epoch, make_generator, sampled_epoch, triplet_epoch
from hybridmf.data.splits import make_split
from hybridmf.data.synthetic import powerlaw_pairs
from hybridmf.training import build_datamodule, build_model, build_trainer, load_data

REPOSITORY = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "RESULT "
SIZES = {
    "small": (100_000, 20_000, 2_000_000),
    "large": (1_000_000, 100_000, 20_000_000),
}
QUICK_GRID = (60, 50, 400)
QUICK_SIZE = (300, 100, 1_500)
KINDS = ("lightning", "plain", "naive", "full-batch-step", "to-auroc", "config", "profile", "synthetic", "implicit")
# The shipped configuration that the "config" cases train with, when the file exists.
DEFAULT_CONFIG = REPOSITORY / "configs" / "default-warm.yaml"
# The options of the original Keras prototype, which the other MEF cases train with.
KERAS_CONFIG = REPOSITORY / "configs" / "keras-original.yaml"
# Seconds per epoch of the original Keras prototype (batch 2000, k = 5, RMSprop) on a
# 2-core AMD EPYC KVM guest, the machine kind of docs/benchmarks.md. It was measured
# outside this script, because TensorFlow is not a dependency of hybridmf.
KERAS_REFERENCE_SECONDS = 0.70
# Targets: Lightning at batch 2000 takes at most 1.5 times the plain loop's epoch, and the
# shipped default configuration at most a tenth of the Keras-equivalent epoch.
LIGHTNING_OVERHEAD_TARGET = 1.5
DEFAULT_CONFIG_TARGET = 0.1


# ----------------------------------------------------------------------------------------
# The parent process: plan the cases, run each in a subprocess, write the report.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``--worker`` is the internal option of a case's subprocess."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/benchmark", help="folder for results.json and results.md")
    parser.add_argument("--data-dir", help="MEF copy (default: $HYBRIDMF_DATA_DIR, then ../shared/data/mef)")
    parser.add_argument("--no-mef", action="store_true", help="skip the MEF cases")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data in place of MEF and the sizes")
    parser.add_argument("--only", help=f"run only these kinds of case, comma-separated: {', '.join(KINDS)}")

    # Synthetic data.
    parser.add_argument(
        "--sizes", default="small", help="synthetic sizes to run, comma-separated (small, large, ...); empty for none"
    )
    parser.add_argument(
        "--size", action="append", default=[], metavar="NAME=ROWSxCOLSxPOSITIVES", help="define or redefine a synthetic size"
    )
    parser.add_argument("--synthetic-epochs", type=int, default=1, help="timed epochs of each synthetic case")
    parser.add_argument("--synthetic-k", type=int, default=64, help="latent factors of the synthetic cases")
    parser.add_argument("--synthetic-batch-size", type=int, default=65536, help="batch size of the synthetic cases")
    parser.add_argument("--neg-ratio", type=int, default=4, help="sampled negatives per positive for sampled BCE")
    parser.add_argument("--max-grid", type=int, default=50_000_000, help="largest grid trained with full-grid BCE")
    parser.add_argument("--engine", choices=("lightning", "plain"), default="lightning", help="how synthetic cases train")

    # MEF.
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs of each MEF case")
    parser.add_argument("--target-auroc", type=float, default=0.88, help="validation AUROC of the to-auroc cases")
    parser.add_argument("--max-validations", type=int, default=30, help="validations before a to-auroc case gives up")
    parser.add_argument("--profile", action="store_true", help="also profile MEF steps with torch.profiler and cProfile")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="runs of each case that a target ratio uses (Lightning and the plain loop at batch 2000, the default config)",
    )
    parser.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG),
        help="YAML options of the shipped default config cases; the cases are skipped when the file is missing",
    )
    parser.add_argument("--config-epochs", type=int, default=30, help="timed epochs of each default config case")

    # Execution.
    parser.add_argument("--threads", type=int, help="torch CPU threads in every case (default: torch's choice)")
    parser.add_argument("--devices", default=None, help="cpu, cuda or both (default: cuda too when available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the split and the models")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds after which a case is stopped")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the cases in this process (for tests: faster, but peak memory is then the maximum so far)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def find_mef_dir(explicit: str | None) -> Path | None:
    """Return the MEF copy named by --data-dir, HYBRIDMF_DATA_DIR or ../shared/data/mef."""
    for candidate in (explicit, os.environ.get("HYBRIDMF_DATA_DIR"), REPOSITORY.parent / "shared" / "data" / "mef"):
        if candidate and (Path(candidate) / "data" / "association.txt").is_file():
            return Path(candidate)
    return None


def parse_sizes(args: argparse.Namespace) -> dict[str, tuple[int, int, int]]:
    """Return the synthetic sizes to run, by name."""
    sizes = dict(SIZES)
    for definition in args.size:
        name, _, shape = definition.partition("=")
        try:
            n_rows, n_cols, n_pairs = (int(part) for part in shape.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--size {definition!r}: expected NAME=ROWSxCOLSxPOSITIVES, for example medium=300000x50000x6000000")
        sizes[name] = (n_rows, n_cols, n_pairs)
    if args.quick:
        return {"quick": QUICK_SIZE}
    names = [name for name in args.sizes.split(",") if name]
    unknown = [name for name in names if name not in sizes]
    if unknown:
        raise SystemExit(f"--sizes: unknown size(s) {unknown}; known: {sorted(sizes)} (add more with --size)")
    return {name: sizes[name] for name in names}


def plan_cases(args: argparse.Namespace, devices: list[str], mef_dir: Path | None) -> list[dict[str, Any]]:
    """List the cases to run, each a dict of plain values for a worker."""
    common = {"seed": args.seed, "threads": args.threads}
    cases: list[dict[str, Any]] = []
    grid = None
    if args.quick:
        grid = {"data": "grid", "shape": QUICK_GRID}
    elif not args.no_mef and mef_dir is not None:
        grid = {"data": "mef", "data_dir": str(mef_dir)}
    epochs = 2 if args.quick else args.epochs
    config = Path(args.config) if Path(args.config).is_file() else None
    for device in devices:
        if grid is not None:
            base = {**common, **grid, "device": device, "epochs": epochs, "k": 5, "lr": 1e-3}
            # The cases of the target ratios run in turns, so that a change of the machine's
            # load during the run affects each of them alike.
            for repeat in range(args.repeats):
                turn = {**base, "repeat": repeat, "repeats": args.repeats}
                cases.append({**turn, "kind": "lightning", "batch_size": 2000})
                cases.append({**turn, "kind": "plain", "batch_size": 2000})
                if config is not None:
                    config_case = {**turn, "kind": "config", "config": str(config), "batch_size": None,
                                   "epochs": 2 if args.quick else args.config_epochs}  # fmt: skip
                    cases.append(config_case)
                    cases.append({**config_case, "trainer": "fit"})
            for batch_size in (20000, None):
                cases.append({**base, "kind": "lightning", "batch_size": batch_size})
            # As scripts/fit.py builds the Trainer: CSV log, checkpoints and progress bar.
            cases.append({**base, "kind": "lightning", "batch_size": 2000, "trainer": "fit"})
            cases.append({**base, "kind": "plain", "batch_size": None})
            cases.append({**base, "kind": "naive", "batch_size": 2000, "epochs": 1})
            cases.append({**base, "kind": "full-batch-step", "batch_size": None})
            limit = 3 if args.quick else args.max_validations
            target = 0.0 if args.quick else args.target_auroc
            # The original settings, and full-batch steps with a learning rate that suits them.
            # A full-batch epoch costs far less than a validation, so it validates every 10.
            for batch_size, lr, val_every in ((2000, 1e-3, 1), (None, 0.03, 10)):
                cases.append(
                    {**base, "kind": "to-auroc", "batch_size": batch_size, "lr": lr, "val_every": val_every,
                     "epochs": limit * val_every, "target": target}
                )  # fmt: skip
            if args.profile or "profile" in (args.only or "").split(","):
                for batch_size in (2000, None):
                    cases.append({**base, "kind": "profile", "batch_size": batch_size, "epochs": 1})
        for name, (n_rows, n_cols, n_pairs) in parse_sizes(args).items():
            base = {
                **common,
                "data": "synthetic",
                "size": name,
                "shape": (n_rows, n_cols, n_pairs),
                "device": device,
                "epochs": args.synthetic_epochs,
                "k": args.synthetic_k,
                "lr": 1e-3,
                "batch_size": min(args.synthetic_batch_size, 4096) if args.quick else args.synthetic_batch_size,
                "engine": args.engine,
            }
            if n_rows * n_cols <= args.max_grid:
                cases.append({**base, "kind": "synthetic", "mode": "full"})
            cases.append({**base, "kind": "synthetic", "mode": "sampled", "neg_ratio": args.neg_ratio})
            cases.append({**base, "kind": "synthetic", "mode": "triplet"})
            if device == "cpu" and _implicit_available():
                for algorithm in ("bpr", "als"):
                    cases.append({**base, "kind": "implicit", "algorithm": algorithm})
    if args.only is not None:
        kinds = set(args.only.split(","))
        unknown = sorted(kinds - set(KINDS))
        if unknown:
            raise SystemExit(f"--only: unknown kind(s) {unknown}; known: {', '.join(KINDS)}")
        cases = [case for case in cases if case["kind"] in kinds]
    return cases


def _implicit_available() -> bool:
    return importlib.util.find_spec("implicit") is not None


def run_case(case: dict[str, Any], out: Path, timeout: int) -> dict[str, Any]:
    """Run one case in a subprocess and return its result, or the reason it failed."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps({**case, "out": str(out)})]
    started = time.perf_counter()
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**case, "error": f"stopped after the --timeout of {timeout} s"}
    lines = [line for line in finished.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if finished.returncode != 0 or not lines:
        tail = (finished.stderr or finished.stdout).strip().splitlines()[-3:]
        return {**case, "error": f"exit status {finished.returncode}: {' | '.join(tail)}"}
    result = json.loads(lines[-1][len(RESULT_PREFIX) :])
    result["process_seconds"] = round(time.perf_counter() - started, 2)
    return result


def describe_machine() -> dict[str, Any]:
    """Return the processor, core count, torch version and GPU, if any."""
    machine: dict[str, Any] = {
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }
    if torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def case_label(result: dict[str, Any]) -> str:
    """Return a short human-readable name of a case."""
    batch = "full grid" if result.get("batch_size") is None else f"batch {result['batch_size']}"
    kind = result["kind"]
    if kind == "synthetic":
        names = {"full": "full-grid BCE", "sampled": f"sampled BCE ×{result.get('neg_ratio')}", "triplet": "BPR"}
        return f"{names[result['mode']]} ({result.get('engine')}, {batch})"
    if kind == "implicit":
        return f"implicit {result['algorithm'].upper()}"
    if kind == "config":
        label = f"default config {Path(result['config']).name} ({batch})"
        if result.get("trainer") == "fit":
            label += " as scripts/fit.py"
    elif result.get("trainer") == "fit":
        label = f"lightning as scripts/fit.py ({batch})"
    else:
        label = f"{kind} ({batch})"
    if result.get("repeats", 1) > 1:
        label += f", run {result['repeat'] + 1} of {result['repeats']}"
    if kind in ("lightning", "plain", "config"):
        return label
    if kind == "to-auroc":
        return f"to AUROC {result.get('target')} ({batch}, lr {result.get('lr')}, validate every {result.get('val_every')})"
    return f"{kind} ({batch})"


def markdown_table(results: list[dict[str, Any]]) -> str:
    """Format the results as a markdown table."""
    header = "| data | case | device | s/epoch | examples/epoch | examples/s | peak RSS (MiB) | notes |"
    lines = [header, "|" + " --- |" * 8]
    for result in results:
        data = result["data"] if result["data"] != "synthetic" else "{} {}×{}, {} pos.".format(result["size"], *result["shape"])
        notes = result.get("error") or result.get("notes", "")
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} |".format(
                data,
                case_label(result),
                result["device"],
                _number(result.get("seconds_per_epoch"), "{:.3f}"),
                _number(result.get("examples_per_epoch"), "{:,}"),
                _number(result.get("examples_per_second"), "{:,.0f}"),
                _number(result.get("peak_rss_bytes"), "{:,.0f}", scale=2**-20),
                notes,
            )
        )
    return "\n".join(lines) + "\n"


def _number(value: float | None, style: str, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return style.format(value * scale if scale != 1.0 else value)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.worker is not None:
        worker(json.loads(args.worker))
        return []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.devices is not None:
        devices = args.devices.split(",")
    else:
        devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be at least 1, got {args.repeats}")
    mef_dir = find_mef_dir(args.data_dir)
    if not Path(args.config).is_file():
        print(f"{args.config} not found: skipping the default config cases")
    if mef_dir is None and not args.no_mef and not args.quick:
        print("MEF data not found (--data-dir, HYBRIDMF_DATA_DIR or ../shared/data/mef): skipping the MEF cases")
    machine = describe_machine()
    print(f"{machine['processor']}, {machine['cpu_cores']} cores, torch {machine['torch']}, load {machine['load_average_at_start']}")

    results = []
    for case in plan_cases(args, devices, mef_dir):
        result = measure({**case, "out": str(out)}) if args.in_process else run_case(case, out, args.timeout)
        results.append(result)
        print(f"{case_label(result):45s} {result['device']:5s} "
              + (result.get("error") or f"{_number(result.get('seconds_per_epoch'), '{:.3f}')} s/epoch  {result.get('notes', '')}"),
              flush=True)  # fmt: skip

    targets = target_ratios(results)
    report = {
        "machine": machine,
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "targets": targets,
        "results": results,
    }
    _write(out / "results.json", json.dumps(report, indent=2) + "\n")
    table = markdown_table(results)
    if targets:
        table += "\n" + targets_table(targets)
    _write(out / "results.md", f"Machine: {json.dumps(machine)}\n\nCommand: `{report['command']}`\n\n{table}")
    print()
    print(table)
    return results


def target_ratios(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the ratios that the speed targets are stated in, each the median over the repeats.

    Each ratio is first taken within one turn of the repeated cases, which ran one after
    the other, and the median of these per-turn ratios is compared with the target:

    * Lightning over the plain loop at batch 2000, at most ``LIGHTNING_OVERHEAD_TARGET``;
    * each default config case over the plain loop at batch 2000, which trains the Keras
      prototype's model and batches in plain PyTorch, at most ``DEFAULT_CONFIG_TARGET``;
    * on MEF, each default config case over ``KERAS_REFERENCE_SECONDS``, the Keras
      prototype's own epoch there, which this script does not measure.
    """
    turns: dict[tuple[str, int], dict[str, float]] = {}
    on_mef = False
    for result in results:
        if "repeat" not in result or result.get("seconds_per_epoch") is None:
            continue
        on_mef = on_mef or result["data"] == "mef"
        name = result["kind"] + (" as scripts/fit.py" if result.get("trainer") == "fit" else "")
        turns.setdefault((result["device"], result["repeat"]), {})[name] = result["seconds_per_epoch"]

    comparisons = [("lightning", "plain", None, LIGHTNING_OVERHEAD_TARGET)]
    for name in ("config", "config as scripts/fit.py"):
        comparisons.append((name, "plain", None, DEFAULT_CONFIG_TARGET))
        if on_mef:
            comparisons.append((name, None, KERAS_REFERENCE_SECONDS, DEFAULT_CONFIG_TARGET))
    targets = []
    for device in sorted({device for device, _ in turns}):
        device_turns = [seconds for (turn_device, _), seconds in sorted(turns.items()) if turn_device == device]
        for numerator, denominator, reference, target in comparisons:
            pairs = [
                (seconds[numerator], seconds[denominator] if reference is None else reference)
                for seconds in device_turns
                if numerator in seconds and (reference is not None or denominator in seconds)
            ]
            if not pairs:
                continue
            ratios = [top / bottom for top, bottom in pairs]
            ratio = statistics.median(ratios)
            targets.append(
                {
                    "comparison": _comparison_label(numerator, denominator, reference),
                    "device": device,
                    "ratio": ratio,
                    "ratios": [round(value, 4) for value in ratios],
                    "seconds_per_epoch": statistics.median(top for top, _ in pairs),
                    "reference_seconds_per_epoch": statistics.median(bottom for _, bottom in pairs),
                    "target": target,
                    "met": ratio <= target,
                }
            )
    return targets


def _comparison_label(numerator: str, denominator: str | None, reference: float | None) -> str:
    names = {
        "lightning": "hybridmf under Lightning, batch 2000",
        "config": "default config",
        "config as scripts/fit.py": "default config as scripts/fit.py",
        "plain": "plain loop, batch 2000 (the Keras prototype's model)",
    }
    if reference is None:
        return f"{names[numerator]} / {names[denominator]}"
    return f"{names[numerator]} / Keras prototype, {reference:.2f} s (reference figure, not measured here)"


def targets_table(targets: list[dict[str, Any]]) -> str:
    """Format the target ratios as a markdown table."""
    lines = [
        "| comparison | device | s/epoch | against s/epoch | ratio (median) | per run | target | met |",
        "|" + " --- |" * 8,
    ]
    for target in targets:
        lines.append(
            "| {} | {} | {:.3f} | {:.3f} | {:.3f} | {} | at most {} | {} |".format(
                target["comparison"],
                target["device"],
                target["seconds_per_epoch"],
                target["reference_seconds_per_epoch"],
                target["ratio"],
                ", ".join(f"{value:.3f}" for value in target["ratios"]),
                target["target"],
                "yes" if target["met"] else "no",
            )
        )
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    write_atomic(path, lambda temporary: temporary.write_text(text))


# ----------------------------------------------------------------------------------------
# The worker process: one case.


def worker(case: dict[str, Any]) -> None:
    """Run one case and print its result as a JSON line."""
    print(RESULT_PREFIX + json.dumps(measure(case)), flush=True)


def measure(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case and return its settings with the figures measured."""
    if case.get("threads") is not None:
        torch.set_num_threads(case["threads"])
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    run = {
        "lightning": run_lightning,
        "plain": run_plain,
        "naive": run_naive,
        "full-batch-step": run_full_batch_step,
        "to-auroc": run_to_auroc,
        "config": run_config,
        "profile": run_profile,
        "synthetic": run_synthetic,
        "implicit": run_implicit,
    }[case["kind"]]
    result = {**case, **run(case), "torch_threads": torch.get_num_threads()}
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    if case["device"] == "cuda":
        result["peak_gpu_bytes"] = torch.cuda.max_memory_allocated()
    return result


def load_grid(case: dict[str, Any]):
    """Return the interaction data and the warm split of a grid case (MEF or a tiny synthetic matrix)."""
    if case["data"] == "mef":
        data = load_mef(case["data_dir"])
    else:
        n_rows, n_cols, n_pairs = case["shape"]
        pairs = np.unique(powerlaw_pairs(n_rows, n_cols, n_pairs, np.random.default_rng(case["seed"])), axis=0)
        data = InteractionData(
            rows=pd.DataFrame({"id": np.arange(n_rows).astype(str), "name": ""}),
            cols=pd.DataFrame({"id": np.arange(n_cols).astype(str), "name": ""}),
            pairs=pairs,
            name=case["data"],
        )
    return data, make_split(data.pairs, data.n_rows, "warm", 0.1, case["seed"])


def fit_config(case: dict[str, Any], batch_size: int) -> FitConfig:
    """Return the options of the original Keras prototype with the case's k, learning rate, batch size and seed.

    The options that configs/keras-original.yaml leaves to the defaults of ``FitConfig``
    are pinned to the prototype's as well, so the MEF cases keep its model when those
    defaults change.
    """
    options = {**load_yaml(KERAS_CONFIG), "bias": False, "l2": 0.0, "weight_decay": 0.0, "features": "none"}
    options.update(k=case["k"], lr=case["lr"], batch_size=batch_size, seed=case["seed"], progress=False)
    return FitConfig(**options)


def grid_size(data, split) -> int:
    return int(len(split.train_rows(data.n_rows)) * data.n_cols)


class EpochClock(pl.Callback):
    """Record when training starts, when each epoch ends, and each validation's time and AUROC."""

    def __init__(self) -> None:
        self.start = 0.0
        self.ends: list[float] = []
        # (seconds since training started, validation AUROC) after each validation.
        self.validation: list[tuple[float, float]] = []
        self.validation_seconds: list[float] = []
        self._validation_start = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.ends.append(time.perf_counter())

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.perf_counter()
        self.validation.append((now - self.start, float(trainer.callback_metrics.get("val/auroc", math.nan))))
        self.validation_seconds.append(now - self._validation_start)


def make_trainer(case: dict[str, Any], max_epochs: int, callbacks: list, validate: bool) -> pl.Trainer:
    """Build a Trainer without logger, checkpoints or progress bar, validating if asked."""
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="gpu" if case["device"] == "cuda" else "cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        check_val_every_n_epoch=case.get("val_every", 1),
        callbacks=callbacks,
    )


def _epoch_seconds(start: float, ends: list[float]) -> list[float]:
    """Return the durations of the epochs from the start time and the epoch end times."""
    return [end - previous for previous, end in zip([start, *ends[:-1]], ends)]


def _summary(durations: list[float], examples: int) -> dict[str, Any]:
    """Return the median epoch time over the epochs after the first (all if there is one)."""
    timed = durations[1:] if len(durations) > 1 else durations
    seconds = statistics.median(timed)
    return {
        "seconds_per_epoch": seconds,
        "epoch_seconds": [round(value, 4) for value in durations],
        "examples_per_epoch": examples,
        "examples_per_second": examples / seconds if seconds > 0 else None,
    }


def _lightning_parts(case: dict[str, Any]) -> tuple[Any, InteractionDataModule, int, int]:
    """Return the model, the data module, the examples per epoch and the batch size of a grid case."""
    data, split = load_grid(case)
    examples = grid_size(data, split)
    batch_size = case["batch_size"] or examples
    pl.seed_everything(case["seed"], verbose=False)
    model = build_model(fit_config(case, batch_size), data, split)
    return model, InteractionDataModule(data, split, batch_size=batch_size, seed=case["seed"]), examples, batch_size


def run_lightning(case: dict[str, Any]) -> dict[str, Any]:
    """Train through Lightning, as scripts/fit.py does, without validation."""
    model, datamodule, examples, batch_size = _lightning_parts(case)
    clock = EpochClock()
    if case.get("trainer") == "fit":
        config = dataclasses.replace(
            fit_config(case, batch_size),
            max_epochs=case["epochs"] + 1,
            progress=True,
            accelerator="gpu" if case["device"] == "cuda" else "cpu",
            devices="1",
        )
        trainer, _ = build_trainer(config, Path(case["out"]) / "fit-run", monitor=False)
        trainer.callbacks.append(clock)
    else:
        trainer = make_trainer(case, case["epochs"] + 1, [clock], validate=False)
    trainer.fit(model, datamodule=datamodule)
    return _summary(_epoch_seconds(clock.start, clock.ends), examples)


def run_config(case: dict[str, Any]) -> dict[str, Any]:
    """Train with the options of a YAML config file, as scripts/fit.py does, without validation.

    The file is read as ``scripts/fit.py --config FILE`` reads it. The case sets the
    number of epochs, the device and the MEF copy. The benchmark's ``--threads`` applies
    instead of the file's ``threads``, so every case runs with the same threads. On the
    tiny data of ``--quick`` the file's feature options are dropped, because that data
    has no features.
    """
    argv = ["--config", case["config"], "--no-progress", "--max-epochs", str(case["epochs"] + 1)]
    argv += ["--accelerator", "gpu" if case["device"] == "cuda" else "cpu", "--devices", "1"]
    if case["data"] == "mef":
        config = parse_config([*argv, "--data-dir", case["data_dir"]])
        data = load_data(config)
    else:
        config = parse_config([*argv, "--features", "none", "--drug-sources", "--adr-sources"])
        data, _ = load_grid(case)
    split = make_split(data.pairs, data.n_rows, config.split, config.val_fraction, config.seed)
    pl.seed_everything(config.seed, verbose=False)
    model = build_model(config, data, split)
    datamodule = build_datamodule(config, data, split)
    clock = EpochClock()
    with tempfile.TemporaryDirectory(dir=case["out"]) as run_dir:
        if case.get("trainer") == "fit":
            trainer, _ = build_trainer(config, Path(run_dir), monitor=False)
            trainer.callbacks.append(clock)
        else:
            trainer = make_trainer(case, config.max_epochs, [clock], validate=False)
        trainer.fit(model, datamodule=datamodule)
    examples = epoch_examples(trainer.train_dataloader.dataset)
    result = _summary(_epoch_seconds(clock.start, clock.ends), examples)
    result["batch_size"] = config.batch_size if config.batch_size < examples else None
    result["notes"] = (
        f"k {config.k}, {config.optimizer}, lr {config.lr}, bias {config.bias}, l2 {config.l2}, "
        f"{datamodule.mode} examples; {config.max_epochs} of the file's {_file_epochs(case['config'])} epochs run"
    )
    return result


def epoch_examples(dataset: EpochBatches | GridBatch) -> int:
    """Return the training examples of one epoch of an ``InteractionDataModule`` training dataset."""
    return len(dataset.tensors["row"]) if isinstance(dataset, EpochBatches) else dataset.labels.numel()


def _file_epochs(path: str) -> int:
    """Return the epochs that a config file trains, its own ``max_epochs`` or the default's."""
    return load_yaml(path).get("max_epochs", FitConfig().max_epochs)


def _plain_model(case: dict[str, Any], data, split, batch_size: int):
    pl.seed_everything(case["seed"], verbose=False)
    model = build_model(fit_config(case, batch_size), data, split).to(case["device"])
    return model, model.configure_optimizers()


def _step(model, optimizer, batch: dict[str, torch.Tensor], index: int) -> None:
    """Run one optimizer step on the module's own loss, as its training_step does, without a Trainer."""
    loss = model._shared_step(batch, "train")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _time_epochs(case: dict[str, Any], n_epochs: int, run_epoch) -> list[float]:
    """Return the wall-clock seconds of ``run_epoch(epoch)`` for each of ``n_epochs`` epochs."""
    durations = []
    for epoch in range(n_epochs):
        start = time.perf_counter()
        run_epoch(epoch)
        if case["device"] == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
    return durations


def _epoch_dataset(case: dict[str, Any], data, split, batch_size: int):
    """Return the training dataset that InteractionDataModule serves, on the case's device."""
    datamodule = InteractionDataModule(data, split, batch_size=batch_size, seed=case["seed"])
    datamodule.setup("fit")
    return datamodule.train_dataloader().dataset.to(case["device"])


def run_plain(case: dict[str, Any]) -> dict[str, Any]:
    """Train the same module on the same batches in a plain loop, without a Trainer."""
    data, split = load_grid(case)
    examples = grid_size(data, split)
    batch_size = case["batch_size"] or examples
    model, optimizer = _plain_model(case, data, split, batch_size)
    dataset = _epoch_dataset(case, data, split, batch_size)

    def run_epoch(epoch: int) -> None:
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            _step(model, optimizer, dataset[index], index)

    return _summary(_time_epochs(case, case["epochs"] + 1, run_epoch), examples)


def run_naive(case: dict[str, Any]) -> dict[str, Any]:
    """Train with a per-pair Dataset and the default DataLoader shuffling and collation."""
    from torch.utils.data import DataLoader, Dataset

    data, split = load_grid(case)
    examples = grid_size(data, split)
    model, optimizer = _plain_model(case, data, split, case["batch_size"])
    positives = PositiveSet(split.train_pairs, data.n_rows, data.n_cols)
    rows = torch.as_tensor(split.train_rows(data.n_rows)).repeat_interleave(data.n_cols)  # (N,) row-major grid
    cols = torch.arange(data.n_cols).repeat(len(rows) // data.n_cols)  # (N,)
    labels = positives.contains(rows, cols).float()  # (N,)

    class PairDataset(Dataset):
        """One labelled pair per item, as a per-example data pipeline would serve it."""

        def __len__(self) -> int:
            return examples

        def __getitem__(self, index: int):
            return rows[index], cols[index], labels[index]

    loader = DataLoader(PairDataset(), batch_size=case["batch_size"], shuffle=True, generator=torch.Generator().manual_seed(0))

    def run_epoch(epoch: int) -> None:
        for index, (row, col, label) in enumerate(loader):
            batch = {"row": row.to(case["device"]), "col": col.to(case["device"]), "label": label.to(case["device"])}
            _step(model, optimizer, batch, index)

    return _summary(_time_epochs(case, case["epochs"], run_epoch), examples)


def run_full_batch_step(case: dict[str, Any]) -> dict[str, Any]:
    """Time single optimizer steps over the whole grid, the batch already built."""
    data, split = load_grid(case)
    examples = grid_size(data, split)
    model, optimizer = _plain_model(case, data, split, examples)
    batch = _epoch_dataset(case, data, split, examples)[0]
    durations = _time_epochs(case, case["epochs"] + 1, lambda index: _step(model, optimizer, batch, index))
    return _summary(durations, examples)


def run_to_auroc(case: dict[str, Any]) -> dict[str, Any]:
    """Train through Lightning with periodic validation until the AUROC reaches the target."""
    model, datamodule, examples, _ = _lightning_parts(case)
    clock = EpochClock()

    class StopAtTarget(pl.Callback):
        def on_validation_end(self, trainer, pl_module) -> None:
            if float(trainer.callback_metrics.get("val/auroc", 0.0)) >= case["target"]:
                trainer.should_stop = True

    make_trainer(case, case["epochs"], [clock, StopAtTarget()], validate=True).fit(model, datamodule=datamodule)
    every = case["val_every"]
    reached = [(seconds, n * every) for n, (seconds, auroc) in enumerate(clock.validation, 1) if auroc >= case["target"]]
    validation_seconds = statistics.median(clock.validation_seconds)
    result = _summary(_epoch_seconds(clock.start, clock.ends), examples)
    result.update(
        seconds_to_target=reached[0][0] if reached else None,
        epochs_to_target=reached[0][1] if reached else None,
        final_auroc=clock.validation[-1][1],
        validation_seconds=validation_seconds,
    )
    if reached:
        result["notes"] = f"AUROC ≥ {case['target']} after {reached[0][1]} epochs, {reached[0][0]:.2f} s"
    else:
        result["notes"] = f"AUROC {clock.validation[-1][1]:.4f} < {case['target']} after {len(clock.validation)} epochs"
    result["notes"] += f"; validation {validation_seconds:.3f} s each"
    return result


def run_profile(case: dict[str, Any]) -> dict[str, Any]:
    """Profile two Lightning epochs with torch.profiler and two more with cProfile, and write their tables.

    The torch.profiler table lists the operators by their own CPU time. The cProfile
    tables list the Python functions by their own time and by their cumulative time, so
    they show where Lightning's per-step work goes. cProfile slows down every Python
    call, so its times overstate the share of Python-heavy code.
    """
    from torch.profiler import ProfilerActivity, profile

    model, datamodule, _, _ = _lightning_parts(case)
    trainer = make_trainer(case, 2, [], validate=False)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if case["device"] == "cuda" else [])
    with profile(activities=activities) as profiler:
        trainer.fit(model, datamodule=datamodule)
    table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    suffix = f"{case['data']}-{case['device']}-batch-{case['batch_size'] or 'full'}.txt"
    _write(Path(case["out"]) / f"profile-{suffix}", table + "\n")

    model, datamodule, _, _ = _lightning_parts(case)
    trainer = make_trainer(case, 2, [], validate=False)
    python_profiler = cProfile.Profile()
    python_profiler.runcall(trainer.fit, model, datamodule=datamodule)
    stream = io.StringIO()
    python_statistics = pstats.Stats(python_profiler, stream=stream)
    python_statistics.sort_stats("tottime").print_stats(30)
    python_statistics.sort_stats("cumulative").print_stats(60)
    _write(Path(case["out"]) / f"cprofile-{suffix}", stream.getvalue())
    return {"notes": f"operator table in profile-{suffix}, Python functions in cprofile-{suffix} (2 epochs each)"}


def load_synthetic(case: dict[str, Any]):
    """Return the cached power-law pairs of a synthetic size, generating them on first use."""
    n_rows, n_cols, n_pairs = case["shape"]
    path = Path(case["out"]) / f"pairs-{n_rows}x{n_cols}x{n_pairs}-seed{case['seed']}.npy"
    if path.is_file():
        return np.load(path)
    pairs = powerlaw_pairs(n_rows, n_cols, n_pairs, np.random.default_rng(case["seed"]))
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    temporary = path.with_suffix(f".{os.getpid()}.npy")
    np.save(temporary, pairs)
    temporary.replace(path)
    return pairs


def run_synthetic(case: dict[str, Any]) -> dict[str, Any]:
    """Train the dot head with full-grid BCE, sampled BCE or BPR on a synthetic matrix."""
    started = time.perf_counter()
    pairs = load_synthetic(case)
    n_rows, n_cols, _ = case["shape"]
    data = InteractionData(
        rows=pd.DataFrame({"id": np.arange(n_rows).astype(str), "name": ""}),
        cols=pd.DataFrame({"id": np.arange(n_cols).astype(str), "name": ""}),
        pairs=pairs,
        name=case["size"],
    )
    split = make_split(data.pairs, n_rows, "warm", 0.0, case["seed"])
    setup_seconds = time.perf_counter() - started
    if case["engine"] == "lightning":
        result = _synthetic_lightning(case, data, split)
    else:
        result = _synthetic_plain(case, data, split)
    result["setup_seconds"] = round(setup_seconds, 2)
    return result


def _synthetic_lightning(case: dict[str, Any], data, split) -> dict[str, Any]:
    config = FitConfig(
        k=case["k"], lr=case["lr"], batch_size=case["batch_size"], seed=case["seed"], progress=False,
        loss="triplet" if case["mode"] == "triplet" else "bce",
        negatives="sampled" if case["mode"] == "sampled" else "full",
        neg_ratio=case.get("neg_ratio", 1),
    )  # fmt: skip
    pl.seed_everything(case["seed"], verbose=False)
    model = build_model(config, data, split)
    datamodule = _datamodule(data, split, case)
    # Lightning builds the first epoch's examples before its clock starts, so one build is
    # timed here on its own and added to the first epoch.
    datamodule.setup("fit")
    start = time.perf_counter()
    dataset = datamodule.train_dataloader().dataset
    build_seconds = time.perf_counter() - start
    examples = epoch_examples(dataset)
    del dataset
    clock = EpochClock()
    make_trainer(case, case["epochs"], [clock], validate=False).fit(model, datamodule=datamodule)
    durations = _epoch_seconds(clock.start, clock.ends)
    durations[0] += build_seconds
    result = _summary(durations, examples)
    result["build_seconds"] = build_seconds
    result["notes"] = f"building the examples takes {build_seconds:.2f} s of it"
    return result


def _datamodule(data, split, case: dict[str, Any]) -> InteractionDataModule:
    options: dict[str, Any] = {"batch_size": case["batch_size"], "seed": case["seed"]}
    if case["mode"] == "sampled":
        options.update(negatives="sampled", neg_ratio=case["neg_ratio"])
    elif case["mode"] == "triplet":
        options.update(triplets=True, neg_ratio=1)
    return InteractionDataModule(data, split, **options)


def _synthetic_plain(case: dict[str, Any], data, split) -> dict[str, Any]:
    """Train in a plain loop on the examples that the hybridmf.data.sampling builders make."""
    positives = PositiveSet(split.train_pairs, data.n_rows, data.n_cols)
    model, optimizer = _plain_model(case, data, split, case["batch_size"])
    names = ("row", "pos", "neg") if case["mode"] == "triplet" else ("row", "col", "label")
    durations, build_seconds, examples = [], [], 0
    for epoch in range(case["epochs"]):
        start = time.perf_counter()
        generator = make_generator(case["seed"], epoch)
        if case["mode"] == "full":
            tensors = full_grid_epoch(positives, generator)
        elif case["mode"] == "sampled":
            tensors = sampled_epoch(positives, case["neg_ratio"], generator)
        else:
            tensors = triplet_epoch(positives, generator)
        tensors = {name: tensor.to(case["device"]) for name, tensor in zip(names, tensors)}
        build_seconds.append(time.perf_counter() - start)
        examples = len(tensors["row"])
        for index, first in enumerate(range(0, examples, case["batch_size"])):
            batch = {name: tensor[first : first + case["batch_size"]] for name, tensor in tensors.items()}
            _step(model, optimizer, batch, index)
        if case["device"] == "cuda":
            torch.cuda.synchronize()
        durations.append(time.perf_counter() - start)
        del tensors
    result = _summary(durations, examples)
    result["build_seconds"] = statistics.median(build_seconds)
    result["notes"] = f"building the examples takes {result['build_seconds']:.2f} s of it"
    return result


def run_implicit(case: dict[str, Any]) -> dict[str, Any]:
    """Fit the implicit library's BPR or ALS with 64 factors on the same synthetic matrix."""
    import implicit
    import scipy.sparse

    pairs = load_synthetic(case)
    n_rows, n_cols, _ = case["shape"]
    matrix = scipy.sparse.csr_matrix((np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])), shape=(n_rows, n_cols))
    options = {"factors": 64, "iterations": case["epochs"], "random_state": case["seed"]}
    if case.get("threads") is not None:
        options["num_threads"] = case["threads"]
    if case["algorithm"] == "bpr":
        model = implicit.cpu.bpr.BayesianPersonalizedRanking(**options)
    else:
        model = implicit.cpu.als.AlternatingLeastSquares(**options)
    start = time.perf_counter()
    model.fit(matrix, show_progress=False)
    seconds = (time.perf_counter() - start) / case["epochs"]
    return {
        "seconds_per_epoch": seconds,
        "examples_per_epoch": len(pairs),
        "examples_per_second": len(pairs) / seconds,
        "notes": f"implicit {getattr(implicit, '__version__', '?')}",
    }


if __name__ == "__main__":
    main()

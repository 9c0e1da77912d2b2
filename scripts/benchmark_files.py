"""Measure the time and peak memory of loading a large synthetic interactions file.

The file has uniformly drawn pairs (ids ``r<i>`` and ``c<j>``, about 0.02 % of them
repeated) and, with ``--weights``, a float weight column. It is written once into
``--dir`` by a child process, so that the generator's memory does not count, and reused
by later runs. The measuring process then calls ``load_interaction_files`` without entity
tables, so both id columns are mapped to new entities.

Usage:
    python scripts/benchmark_files.py --pairs 20000000 --format parquet --dir /tmp/hybridmf-bench
    python scripts/benchmark_files.py --pairs 20000000 --format csv --dir /tmp/hybridmf-bench

The script prints the load time, the resident set size before loading and the peak
resident set size of the process (Linux ``ru_maxrss``), which includes the imports.

Measured with the defaults (20,000,000 pairs over 1,000,000 × 100,000 ids, seed 0, no
weights) on a 2-core x86-64 machine. Other jobs kept its load average at about 7, so the
wall-clock times are pessimistic. The user CPU time comes from ``/usr/bin/time -v`` on a
run that found the file already generated:

    format   reader    load (wall)   user CPU   RSS after imports   peak RSS
    parquet  pyarrow   82 s          32 s       485 MiB             1601 MiB
    csv      pyarrow   75 s          33 s       485 MiB             1583 MiB
    csv      pandas    125 s         52 s       485 MiB             1564 MiB

The data set it builds holds 320 MB of int64 pairs; the peak adds the int32 indices read,
one int64 sort key per pair and the id tables.
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def generate(path: Path, n_pairs: int, n_rows: int, n_cols: int, weights: bool, seed: int) -> None:
    """Write ``n_pairs`` uniform pairs to ``path`` (CSV or Parquet by suffix) with pyarrow."""
    import pyarrow
    import pyarrow.csv
    import pyarrow.parquet

    rng = np.random.default_rng(seed)
    row_names = pyarrow.array([f"r{i}" for i in range(n_rows)])
    col_names = pyarrow.array([f"c{j}" for j in range(n_cols)])
    columns = {
        "row_id": pyarrow.DictionaryArray.from_arrays(
            pyarrow.array(rng.integers(0, n_rows, n_pairs, dtype=np.int32)), row_names
        ).cast(pyarrow.string()),
        "col_id": pyarrow.DictionaryArray.from_arrays(
            pyarrow.array(rng.integers(0, n_cols, n_pairs, dtype=np.int32)), col_names
        ).cast(pyarrow.string()),
    }
    if weights:
        columns["weight"] = pyarrow.array(rng.integers(1, 6, n_pairs).astype(np.float32))
    table = pyarrow.table(columns)
    temporary = path.with_name(path.name + ".partial")
    if path.suffix == ".parquet":
        pyarrow.parquet.write_table(table, temporary)
    else:
        pyarrow.csv.write_csv(table, temporary, pyarrow.csv.WriteOptions(quoting_style="none"))
    temporary.replace(path)


def resident_mib() -> float:
    """Return the current resident set size in MiB, read from /proc (Linux)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000_000, help="number of lines of the file")
    parser.add_argument("--rows", type=int, default=1_000_000, help="number of distinct row ids")
    parser.add_argument("--cols", type=int, default=100_000, help="number of distinct column ids")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="file format")
    parser.add_argument("--weights", action="store_true", help="add and read a weight column")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/hybridmf-bench"), help="folder of the generated file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator")
    parser.add_argument(
        "--pandas-reader", action="store_true", help="read a CSV file with the pandas reader used when pyarrow is missing"
    )
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    suffix = "_w" if arguments.weights else ""
    path = arguments.dir / f"pairs_{arguments.pairs}_{arguments.rows}x{arguments.cols}{suffix}.{arguments.format}"
    if arguments.generate_only:
        generate(path, arguments.pairs, arguments.rows, arguments.cols, arguments.weights, arguments.seed)
        return
    if not path.is_file():
        arguments.dir.mkdir(parents=True, exist_ok=True)
        print(f"generating {path}", flush=True)
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--generate-only"], check=True)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from hybridmf.data import files
    from hybridmf.data.files import load_interaction_files

    if arguments.pandas_reader:
        files._pyarrow_installed = lambda: False

    before = resident_mib()
    started = time.perf_counter()
    data = load_interaction_files(path, weight_column="weight" if arguments.weights else None)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux

    print(f"file           {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    print(f"text reader    {'pandas' if arguments.pandas_reader else 'pyarrow'}")
    print(f"data           {data.n_rows} rows, {data.n_cols} columns, {data.n_pairs} unique pairs")
    print(f"load           {seconds:.1f} s")
    print(f"RSS before     {before:.0f} MiB (after imports)")
    print(f"peak RSS       {peak:.0f} MiB")
    print(f"machine        {platform.machine()}, {platform.python_implementation()} {platform.python_version()}")


if __name__ == "__main__":
    main()

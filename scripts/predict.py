"""Rank unreported ADRs of a drug, drugs of an ADR, new molecules or every unknown pair.

Examples:
    python scripts/predict.py --checkpoint runs/final/checkpoints/last.ckpt --drug ropivacaine --top 20
    python scripts/predict.py --checkpoint runs/final/checkpoints/last.ckpt --adr "nephrotic syndrome"
    python scripts/predict.py --checkpoint runs/final/checkpoints/last.ckpt --smiles "CCN(CC)CC(=O)Nc1c(C)cccc1C"
    python scripts/predict.py --checkpoint runs/final/checkpoints/last.ckpt --all --out novel.csv
"""

from __future__ import annotations

import argparse
import logging
import sys

import pandas as pd

from hybridmf.config import run_command
from hybridmf.data.io import table_format, write_table
from hybridmf.scoring import Ranker, read_molecules

DEFAULT_TOP = 20


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2]
    )
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint written by scripts/fit.py, such as RUN/checkpoints/last.ckpt")
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--drug", metavar="ID_OR_NAME", help="rank the ADRs of this drug (id, or name in any case)")
    query.add_argument("--adr", metavar="ID_OR_NAME", help="rank the drugs of this ADR (id, or name in any case)")
    query.add_argument("--smiles", action="append", metavar="SMILES", help="rank the ADRs of a new molecule; repeat for several")
    query.add_argument("--smiles-file", metavar="FILE", help="rank the ADRs of new molecules listed as name,smiles lines")
    query.add_argument("--all", action="store_true", help="rank every unknown (drug, ADR) pair")
    parser.add_argument(
        "--top", type=int, metavar="K", help=f"lines per drug, ADR or molecule (default {DEFAULT_TOP}; with --all: every pair)"
    )
    parser.add_argument("--include-known", action="store_true", help="keep the known associations, flagged known=True")
    parser.add_argument(
        "--device", "--map-location", dest="device", default="cpu", help="device to load the model on: cpu, cuda, cuda:1, ..."
    )
    parser.add_argument("--out", metavar="FILE", help="write the whole table to FILE, as CSV (.csv) or Parquet (.parquet)")
    parser.add_argument("--show", type=int, default=50, metavar="N", help="lines of the table printed on the terminal")
    return parser


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the command line and return the table it printed (and wrote).

    Raises:
        SystemExit: When the options are invalid (argparse's usage message).
        FileNotFoundError, ValueError: When the checkpoint, an id or name, a SMILES or the
            output file name is invalid; ``run`` prints the message.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.top is not None and arguments.top < 1:
        parser.error(f"--top must be at least 1, got {arguments.top}")
    if arguments.show < 0:
        parser.error(f"--show must be at least 0, got {arguments.show}")
    if arguments.all and arguments.include_known:
        parser.error("--include-known does not apply to --all, which ranks the unknown pairs only")
    if arguments.include_known and (arguments.smiles or arguments.smiles_file):
        parser.error("--include-known does not apply to new molecules, which have no known associations")
    if arguments.out is not None:
        table_format(arguments.out)
    top = arguments.top if arguments.top is not None or arguments.all else DEFAULT_TOP

    ranker = Ranker.from_checkpoint(arguments.checkpoint, map_location=arguments.device)
    table, title = rank(ranker, arguments, top)

    known = "known associations included" if arguments.include_known else "known associations left out"
    if arguments.smiles or arguments.smiles_file:
        known = "new molecules have no known associations"
    count = f"All {len(table)}" if top is None else f"Top {len(table)}"
    print(f"{count} {title} by score ({known}); model {arguments.checkpoint}")
    print(format_table(table, arguments.show))
    if arguments.out is not None:
        write_table(table, arguments.out)
        print(f"wrote {len(table)} rows to {arguments.out}")
    return table


def rank(ranker: Ranker, arguments: argparse.Namespace, top: int | None) -> tuple[pd.DataFrame, str]:
    """Run the query that the options select and return its table and a title for it."""
    if arguments.drug is not None:
        table = ranker.rank_cols(arguments.drug, k=top, include_known=arguments.include_known)
        title = f"ADRs of {table['drug_name'].iloc[0]} ({table['drug_id'].iloc[0]})" if len(table) else "ADRs"
    elif arguments.adr is not None:
        table = ranker.rank_rows(arguments.adr, k=top, include_known=arguments.include_known)
        title = f"drugs of {table['adr_name'].iloc[0]} ({table['adr_id'].iloc[0]})" if len(table) else "drugs"
    elif arguments.all:
        table = ranker.rank_unknown_pairs(k=top)
        title = "unknown (drug, ADR) pairs"
    elif arguments.smiles_file is not None:
        molecules = read_molecules(arguments.smiles_file)
        table = ranker.rank_molecules(molecules["smiles"].tolist(), k=top, names=molecules["name"].tolist())
        title = "ADRs of new molecules"
    else:
        table = ranker.rank_molecules(arguments.smiles, k=top)
        title = "ADRs of new molecules"
    return table, title


def format_table(table: pd.DataFrame, max_lines: int) -> str:
    """Return the first ``max_lines`` lines of ``table`` as aligned text, noting the rest."""
    text = table.head(max_lines).to_string(index=False, float_format=lambda value: f"{value:.4f}")
    if len(table) > max_lines:
        text += f"\n... {len(table) - max_lines} more rows (--show N prints more, --out FILE saves all)"
    return text


def run(argv: list[str] | None = None) -> int:
    """Run ``main``, print an invalid input as a one-line error without a traceback, and return the exit status."""
    return run_command(main, sys.argv[1:] if argv is None else argv, "predict.py")


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

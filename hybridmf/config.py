"""Run configuration: one dataclass that the command line, YAML files and Python share.

Every field of ``FitConfig`` is a command-line option (``k`` is ``--k``, ``pos_weight`` is
``--pos-weight``) and a key of the YAML files in ``configs/``. A YAML file is applied first
and command-line flags override it; unknown keys and invalid choices are rejected with
the list of valid ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import yaml

from hybridmf.data.features import LABEL_LEAK_SOURCES, expand_feature_names
from hybridmf.model.blend import BLEND_METHODS, BLEND_MODES, check_blend_options

logger = logging.getLogger(__name__)

# The shipped default configuration of each protocol, relative to the repository root.
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
DEFAULT_CONFIGS = {"warm": "default-warm.yaml", "cold-drug": "default-new-drug.yaml"}


def shipped_default(protocol: str) -> Path | None:
    """Return the shipped default configuration file of a protocol, or None when there is none.

    The files live in ``configs/`` of a source checkout; an installed package without
    them falls back to the built-in defaults.
    """
    name = DEFAULT_CONFIGS.get(protocol)
    if name is None or not (CONFIGS_DIR / name).is_file():
        return None
    return CONFIGS_DIR / name


def _option(default: Any, help: str, choices: tuple | None = None, **extra: Any) -> Any:
    metadata = {"help": help, "choices": choices, **extra}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# The MEF drug and ADR feature sources of each --features value, as names of
# hybridmf.data.features.FEATURE_PRESETS.
FEATURE_PRESET_SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "none": ((), ()),
    "fingerprints": (("fingerprints",), ()),
    "drug": (("drug",), ()),
    "adr": ((), ("adr",)),
    "all": (("drug",), ("adr",)),
}
FEATURE_PRESETS = tuple(FEATURE_PRESET_SOURCES)


@dataclass
class FitConfig:
    """Options of a training run; the defaults reproduce the original Keras prototype."""

    # Data: a named data set, or your own files.
    dataset: str = _option("mef", "named data set; ignored when --interactions is given", choices=("mef",))
    data_dir: str | None = _option(
        None, "local copy of the MEF repository (default: $HYBRIDMF_DATA_DIR, then the cache under data/)"
    )
    interactions: str | None = _option(None, "interactions file (CSV, TSV or Parquet) to train on instead of MEF")
    rows: str | None = _option(None, "row entity table (id, name, optional smiles) for --interactions")
    cols: str | None = _option(None, "column entity table (id, name) for --interactions")
    row_id_column: str = _option("row_id", "column of the interactions file that holds the row id")
    col_id_column: str = _option("col_id", "column of the interactions file that holds the column id")
    weight_column: str | None = _option(
        None,
        "optional column of confidence weights (finite numbers > 0) in the interactions file: a known pair "
        "of weight w weighs w * --pos-weight in the BCE loss, and its triplets weigh w",
    )
    row_feature_files: tuple[str, ...] = _option(
        (), "feature tables of the rows: an id column plus numeric columns, or a 'tokens' column of ;-separated tokens"
    )
    col_feature_files: tuple[str, ...] = _option((), "feature tables of the columns, in the format of --row-feature-files")
    allow_unknown_ids: bool = _option(False, "add ids that appear only in the interactions file to the entity tables")
    missing_features: str = _option(
        "error", "what to do when a feature table lacks some entities", choices=("error", "zero")
    )
    # Side features.
    features: str = _option("none", "side features fed to the encoders", choices=FEATURE_PRESETS)
    drug_sources: tuple[str, ...] = _option((), "individual drug feature sources; overrides the preset's drug part")
    adr_sources: tuple[str, ...] = _option((), "individual ADR feature sources; overrides the preset's ADR part")
    fingerprint_radius: int = _option(2, "radius of the Morgan fingerprints")
    fingerprint_bits: int = _option(2048, "number of bits of the Morgan fingerprints")
    allow_label_leak: bool = _option(
        False, "allow feature sources computed from the associations (ADR co-occurrence); invalidates evaluation"
    )
    # Split.
    split: str = _option("warm", "hold out pairs (warm) or whole drugs (cold)", choices=("warm", "cold"))
    val_fraction: float = _option(
        0.1, "fraction of pairs (warm) or drugs (cold) held out for validation; 0 trains on every pair"
    )
    seed: int = _option(0, "seed of the split, the initialization, the batch order and the negatives")
    # Model.
    k: int = _option(5, "size of the latent space")
    head: str = _option("dot", "pair scorer: dot product + affine output, or an MLP", choices=("dot", "mlp"))
    head_hidden: tuple[int, ...] = _option((64,), "hidden layer sizes of the MLP head")
    head_dropout: float = _option(0.0, "dropout of the MLP head")
    head_product: bool = _option(True, "also feed the element-wise product of the two vectors to the MLP head")
    row_ids: bool = _option(True, "learn an ID embedding per row (drug)")
    col_ids: bool = _option(True, "learn an ID embedding per column (ADR)")
    encoder_hidden: tuple[int, ...] = _option((), "hidden layer sizes of the feature encoders (none: a linear map)")
    encoder_activation: str = _option("relu", "activation of the encoders", choices=("relu", "gelu", "tanh", "leaky_relu"))
    encoder_dropout: float = _option(0.0, "dropout of the encoders")
    encoder_norm: str | None = _option(None, "normalization in the encoders: batch or layer", choices=(None, "batch", "layer"))
    combine: str = _option("sum", "how ID embedding and encoded features combine", choices=("sum", "concat"))
    id_dropout: float = _option(
        0.0, "probability of dropping an example's ID embeddings in training, on the sides that have features"
    )
    bias: bool = _option(False, "learn a bias per drug and per ADR (a popularity prior)")
    # Loss and sampling.
    loss: str = _option("bce", "training loss: weighted BCE, or a triplet loss", choices=("bce", "triplet"))
    triplet: str = _option("bpr", "triplet loss: BPR or margin (hinge)", choices=("bpr", "margin"))
    pos_weight: float = _option(50.0, "weight of a positive pair in the BCE loss (unknown pairs weigh 1)")
    margin: float = _option(1.0, "margin of the margin triplet loss")
    negatives: str = _option(
        "full",
        "BCE on every pair of the grid, or on sampled negatives; triplet losses always sample",
        choices=("full", "sampled"),
    )
    neg_ratio: int = _option(
        4, "sampled negatives per positive (BCE with --negatives sampled, or triplets), redrawn every epoch"
    )
    neg_sampling: str = _option(
        "uniform",
        "distribution of sampled negatives: uniform over columns, or popularity (column count ** 0.75)",
        choices=("uniform", "popularity"),
    )
    # Optimization.
    l2: float = _option(0.0, "L2 penalty on the latent vectors of each batch", minimum=0.0)
    row_feature_l2: float = _option(0.0, "L2 penalty on the weights of the drug (row) feature encoder, per step", minimum=0.0)
    col_feature_l2: float = _option(0.0, "L2 penalty on the weights of the ADR (column) feature encoder, per step", minimum=0.0)
    optimizer: str = _option(
        "rmsprop", "optimizer", choices=("adam", "adamw", "rmsprop", "sgd", "adagrad")
    )
    lr: float = _option(1e-3, "learning rate")
    weight_decay: float = _option(0.0, "weight decay of the optimizer", minimum=0.0)
    batch_size: int = _option(2000, "training examples per batch")
    max_epochs: int = _option(20, "number of training epochs", minimum=1)
    patience: int | None = _option(None, "stop after this many epochs without a better validation AUROC")
    select_epoch: str = _option(
        "best",
        "checkpoint to keep: the epoch with the best validation AUROC, or the last epoch (a fixed "
        "epoch count; evaluate.py then trains each fold on its whole training part)",
        choices=("best", "last"),
    )
    val_every_n_epochs: int = _option(
        1, "validate every this many epochs (validation can cost more than a full-batch training epoch)", minimum=1
    )
    # Ensemble.
    blend: str = _option(
        "none",
        "after training, blend the selected model with the EASE item-item model (ease) or with ridge regression "
        "from the row features (ridge, for new rows), as --blend-mode sets; the blend is saved in the checkpoint",
        choices=BLEND_METHODS,
    )
    blend_weight: float = _option(
        0.5,
        "weight of the baseline part in the blend, from 0 (model only) to 1: under --blend-mode rank, 1 is EASE "
        "or ridge alone; under row, the part's z-score moves a score by this many standard deviations of the "
        "model's logits",
    )
    blend_mode: str = _option(
        "rank",
        "how the blend combines the two scorers: rank averages their global ranks (each score's quantile among "
        "all training candidate pairs); row adds the baseline part's "
        "within-row z-score, times --blend-weight and the standard deviation of the model's logits, to the model's logits, so "
        "each row keeps the model's level against other rows and only the order of its columns moves",
        choices=BLEND_MODES,
    )
    blend_ease_l2: float = _option(100.0, "L2 regularisation strength lambda of the EASE part of the blend")
    blend_ridge_l2: float = _option(
        3.0, "L2 regularisation strength lambda of the ridge part of the blend (each feature source scaled to norm 1)"
    )
    # Evaluation and output.
    eval_k: int = _option(10, "cut-off k of the ranking metrics (NDCG@k, HR@k, precision@k, recall@k)")
    eval_pooled_sample: int | None = _option(
        None,
        "estimate the pooled AUROC and AUPR on a uniform sample of at most this many candidate pairs, "
        "which bounds their memory (default: every candidate pair, exact)",
        minimum=1,
    )
    out: str | None = _option(None, "output directory (default: runs/fit-<date>-<time>)")
    resume: str | None = _option(None, "checkpoint to continue training from (optimizer state, epoch, RNG)")
    checkpoint_every_n_epochs: int = _option(
        1,
        "write checkpoints/last.ckpt every this many epochs; the interval used is the greatest common divisor of "
        "this and --max-epochs, so the last epoch is always written. Full-batch runs of hundreds of epochs need "
        "not write each one",
        minimum=1,
    )
    checkpoint_every_n_steps: int | None = _option(
        None, "also write checkpoints/last.ckpt every this many training steps (default: after each epoch only)", minimum=1
    )
    # Hardware; passed to the Lightning Trainer.
    accelerator: str = _option("auto", "Lightning accelerator: auto, cpu, gpu, ...")
    devices: str = _option("auto", "Lightning devices: auto, a count, or a list such as 0,1")
    strategy: str = _option("auto", "Lightning strategy: auto, ddp, ...")
    num_nodes: int = _option(1, "number of machines for distributed training", minimum=1)
    threads: int | None = _option(
        None, "CPU threads of each process for torch operations (default: torch's choice, usually one per core)", minimum=1
    )
    progress: bool = _option(True, "show a progress bar")

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            minimum = item.metadata.get("minimum")
            value = getattr(self, item.name)
            if minimum is not None and value is not None and value < minimum:
                raise ValueError(f"invalid value {value!r} for {item.name}; it must be at least {minimum}")
        for item in dataclasses.fields(self):
            choices = item.metadata.get("choices")
            value = getattr(self, item.name)
            if choices is not None and value not in choices:
                raise ValueError(
                    f"invalid value {value!r} for {item.name}; valid values: {', '.join(map(str, choices))}"
                )
        check_blend_options(self.blend, self.blend_weight, self.blend_ease_l2, self.blend_ridge_l2, self.blend_mode)
        _, adr_sources = self.feature_sources()
        leaking = [name for name in adr_sources if name in LABEL_LEAK_SOURCES]
        if leaking and not self.allow_label_leak:
            raise ValueError(
                f"the ADR feature source {leaking[0]!r} is computed from the drug-ADR associations, "
                f"so it contains the labels of the held-out pairs and inflates every validation "
                f"figure. Remove it from adr_sources, or pass --allow-label-leak (YAML: "
                f"allow_label_leak: true) for a run that is not evaluated on those pairs"
            )

    def feature_sources(self) -> tuple[list[str], list[str]]:
        """Return the MEF drug and ADR feature sources selected by the options, presets expanded.

        ``drug_sources`` and ``adr_sources``, when given, replace the drug or ADR part of
        the ``features`` preset.

        Raises:
            ValueError: When a source name is unknown or belongs to the other side.

        Example:
            >>> FitConfig(features="all", drug_sources=("fingerprint", "atc")).feature_sources()[0]
            ['fingerprint', 'atc']
        """
        preset_drug, preset_adr = FEATURE_PRESET_SOURCES[self.features]
        selected = (
            ("drug_sources", "drug", self.drug_sources or preset_drug),
            ("adr_sources", "adr", self.adr_sources or preset_adr),
        )
        expanded = []
        for option, side, names in selected:
            try:
                expanded.append(expand_feature_names(list(names), side))
            except ValueError as error:
                raise ValueError(f"invalid {option} {list(names)}: {error}") from None
        return expanded[0], expanded[1]

    def to_dict(self) -> dict[str, Any]:
        """Return the options as plain values (tuples as lists), ready for YAML or JSON."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(self).items()}


def default_fit_config(first: argparse.Namespace) -> Path | None:
    """Return the shipped default of ``scripts/fit.py``: the warm one, or the new-drug one for ``--split cold``."""
    return _default_for(first, "warm" if first.split == "warm" else "cold-drug")


def default_evaluate_config(first: argparse.Namespace) -> Path | None:
    """Return the shipped default of ``scripts/evaluate.py`` for the protocol on the command line."""
    return _default_for(first, first.protocol)


def _default_for(first: argparse.Namespace, protocol: str) -> Path | None:
    """Return the protocol's shipped default, or None for own data (``--interactions``) when it names MEF sources.

    MEF feature sources need the MEF files, which own data does not have.
    """
    path = shipped_default(protocol)
    if path is not None and first.interactions is not None and _uses_mef_features(path):
        return None
    return path


def _uses_mef_features(path: Path) -> bool:
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return values.get("features", "none") != "none" or bool(values.get("drug_sources")) or bool(values.get("adr_sources"))


def _field_type(config_class: type, name: str) -> Any:
    hints = typing.get_type_hints(config_class)
    return hints[name]


def build_parser(config_class: type = FitConfig, description: str | None = None) -> argparse.ArgumentParser:
    """Build a command-line parser with one option per field of ``config_class``.

    Example:
        >>> parser = build_parser()
        >>> parser.parse_args(["--k", "8", "--no-progress"]).k
        8
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument(
        "--config",
        help="YAML file of options (keys as below, with underscores); flags override it. "
        "'none' uses the built-in defaults of the options below",
    )
    for item in dataclasses.fields(config_class):
        flag = "--" + item.name.replace("_", "-")
        kind = _field_type(config_class, item.name)
        options: dict[str, Any] = {"dest": item.name, "help": item.metadata.get("help", "")}
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
        options["default"] = default
        if item.metadata.get("choices") is not None:
            options["choices"] = item.metadata["choices"]
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            options.update(nargs="*", type=typing.get_args(kind)[0])
        else:
            base = _strip_optional(kind)
            options["type"] = base
        parser.add_argument(flag, **options)
    return parser


def _strip_optional(kind: Any) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        arguments = [argument for argument in typing.get_args(kind) if argument is not type(None)]
        return arguments[0]
    return kind


def load_yaml(path: str | os.PathLike, config_class: type = FitConfig) -> dict[str, Any]:
    """Read a YAML file of options and check its keys against ``config_class``.

    Raises:
        ValueError: When the file is not a mapping or has unknown keys.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file must be a mapping of option: value, got {type(values).__name__}")
    known = {item.name for item in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {unknown}; valid options: {', '.join(sorted(known))}")
    for name, value in values.items():
        values[name] = _check_yaml_value(path, name, value, _field_type(config_class, name))
    return values


def _check_yaml_value(path: Path, name: str, value: Any, kind: Any) -> Any:
    """Return a YAML value as the option's type, or raise naming the file, the key and the type expected."""
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)
    base = _strip_optional(kind)
    if value is None and optional:
        return None
    if typing.get_origin(base) is tuple:
        element = typing.get_args(base)[0]
        if isinstance(value, list) and all(_matches(item, element) for item in value):
            return tuple(float(item) if element is float else item for item in value)
        expected = f"a list of {element.__name__} values"
    elif _matches(value, base):
        return float(value) if base is float else value
    else:
        expected = "true or false" if base is bool else f"a value of type {base.__name__}"
    raise ValueError(f"{path}: option {name!r} must be {expected}{' or null' if optional else ''}, got {value!r}")


def _matches(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def parse_config(
    argv: list[str] | None = None,
    config_class: type = FitConfig,
    description: str | None = None,
    default_config: Callable[[argparse.Namespace], Path | None] | None = None,
):
    """Parse the command line (and its ``--config`` file) into a ``config_class`` instance.

    Args:
        argv: Command-line arguments; None reads ``sys.argv``.
        config_class: The dataclass to fill.
        description: Help text of the parser.
        default_config: Returns the YAML file to apply when ``--config`` is not given,
            from a first parse of the command line (so it can depend on ``--protocol``),
            or None for the dataclass defaults. ``--config none`` skips it.

    Raises:
        SystemExit: With argparse's usage message when an option is invalid.
    """
    parser = build_parser(config_class, description)
    first, _ = parser.parse_known_args(argv)
    config_file = first.config
    if config_file is None and default_config is not None:
        config_file = default_config(first)
        if config_file is not None:
            logger.info("no --config given: using the shipped default %s (--config none for the built-in defaults)", config_file)
    if config_file is not None and str(config_file) != "none":
        try:
            parser.set_defaults(**load_yaml(config_file, config_class))
        except (OSError, ValueError) as error:
            parser.error(str(error))
    arguments = vars(parser.parse_args(argv))
    arguments.pop("config")
    try:
        return config_class(**arguments)
    except ValueError as error:
        parser.error(str(error))


PROTOCOLS = ("warm", "cold-drug", "cold-adr")


@dataclass
class EvaluateConfig(FitConfig):
    """Options of a cross-validation run: every ``FitConfig`` option plus the protocol.

    The split options of ``FitConfig`` change meaning here: the protocol decides what is
    held out for testing, ``--split`` is ignored, and ``--val-fraction`` is the share of
    each fold's training part that selects the model's epoch.
    """

    protocol: str = _option(
        "warm",
        "hold out pairs (warm), whole drugs (cold-drug) or whole ADRs (cold-adr) in each fold",
        choices=PROTOCOLS,
    )
    folds: int = _option(5, "number of cross-validation folds")
    methods: tuple[str, ...] = _option(
        (),
        "methods to compare: model and baseline names (popularity, row_knn, column_knn, ease, "
        "feature_knn, feature_ridge). Without any, the protocol's default list is used",
    )
    knn_neighbors: int = _option(20, "neighbours of the row_knn, column_knn and feature_knn baselines")
    ease_l2: float = _option(100.0, "L2 regularisation strength lambda of the ease baseline")
    ridge_l2: float = _option(
        3.0, "L2 regularisation strength lambda of the feature_ridge baseline (each feature source scaled to norm 1)"
    )
    out: str | None = _option(None, "output directory (default: runs/evaluate-<protocol>-<date>-<time>)")


@dataclass
class TuneConfig(FitConfig):
    """Options of a hyperparameter search: every ``FitConfig`` option plus the study's.

    The ``FitConfig`` options form the base configuration; the search replaces the ones
    its space draws (see ``hybridmf.tuning.suggest``). The search trains on an inner split
    of one outer fold's training part, so the fold's test pairs stay unseen.
    """

    protocol: str = _option("warm", "protocol whose fold is searched on", choices=PROTOCOLS)
    folds: int = _option(5, "number of outer cross-validation folds, as in evaluate.py", minimum=2)
    fold: int = _option(0, "outer fold whose training part is searched on", minimum=0)
    inner_folds: int = _option(
        1, "search on the inner splits of this many outer folds, from --fold on, and average them", minimum=1
    )
    inner_val_fraction: float = _option(
        0.2, "share of the fold's training pairs (warm) or drugs (cold) that scores the trials"
    )
    trials: int = _option(
        40, "trials to run in this call (a stored study continues; 0 only rewrites the output)", minimum=0
    )
    objective: str = _option(
        "balanced",
        "value to maximize: balanced (mean of AUROC, AUPR and NDCG@k as ratios to popularity), baselines (the "
        "smallest ratio of AUROC, AUPR and NDCG@k to the best default baseline of the protocol on that metric), "
        "or one metric",
        choices=("balanced", "baselines", "auroc", "aupr", "ndcg"),
    )
    tolerance: float = _option(
        0.01, "trials within this relative distance of the best objective value tie; the tie goes to AUROC"
    )
    hold: tuple[str, ...] = _option(
        (), "searched options to hold at their value from the command line or --config instead (for example bias)"
    )
    storage: str | None = _option(
        None, "SQLite file that stores the study, so an interrupted search continues (default: runs/tune/<output name>.db)"
    )
    output: str = _option("configs/tuned.yaml", "YAML file the best configuration is written to")


def run_command(main: Callable[[list[str]], Any], argv: list[str], program: str) -> int:
    """Run a script's ``main`` and print invalid input as one line without a traceback.

    The messages of hybridmf's ``ValueError`` and ``FileNotFoundError`` name the file, line,
    option or value and list what is accepted, so the traceback adds nothing for a user.
    A reader that closes the output early (``predict.py ... | head``) ends the script
    quietly, as command-line tools do.

    Returns:
        The exit status: 0, 1 after an invalid input, or 141 (as a shell reports SIGPIPE)
        when the output was closed.

    Example:
        >>> def main(argv):
        ...     raise ValueError("bad value")
        >>> run_command(main, [], "demo.py")
        1
    """
    try:
        main(argv)
    except (FileNotFoundError, ValueError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Point stdout at /dev/null, so that flushing it at exit raises nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return 0

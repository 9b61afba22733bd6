"""The `tinylm` command: thin Typer wrappers over the library, with rich output.

Every failure the user can cause is a TinyLMError, printed as one line `error: ...` with a non-zero exit.
`tinylm --debug ...` (or TINYLM_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
import typing
from dataclasses import fields
from enum import Enum, StrEnum
from inspect import Parameter, signature
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tinylm.config import (PRESETS, ClassWeights, Device, EmbeddingInit, ExportFormat, FinetuneConfig, LongDocs,
                           OnNan, Pooling, Precision, PretrainConfig, RunOptions, SELF_TRAINING_ROUNDS, StageConfig,
                           Thresholds, TrainArgs, flag, resolve_finetune, resolve_pretrain, to_toml)
from tinylm.data import FORMATS_HELP
from tinylm.distributed import rank
from tinylm.errors import Interrupted, TinyLMError
from tinylm.provenance import command_line

try:  # typer >= 0.25 carries its own click, whose errors derive from TyperException
    from typer import TyperException as UsageProblem
except ImportError:
    from click import ClickException as UsageProblem

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train your own small BERT-style language model and text classifier, on your own machine.")
out = Console(soft_wrap=True)
state = {"debug": bool(os.environ.get("TINYLM_DEBUG"))}

DataArg = Annotated[list[Path], typer.Argument(help=FORMATS_HELP, show_default=False)]
TextColumn = Annotated[str, typer.Option(help="Column (CSV/TSV header or JSONL key) holding the text.")]
LabelColumn = Annotated[str, typer.Option(help="Column holding the label.")]
Encoding = Annotated[str, typer.Option(help="Text encoding of the input files.")]
DeviceOpt = Annotated[Device, typer.Option(help="auto = a CUDA GPU when there is one.")]
PrecisionOpt = Annotated[Precision, typer.Option(help="auto = bf16 where the hardware runs it natively, else fp32.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out folder.")]
RecordHost = Annotated[bool, typer.Option("--record-host", help="Record this machine's host name in provenance.json.")]
ScrubPii = Annotated[bool, typer.Option("--scrub-pii", help="Replace e-mails, IBANs, card and phone numbers with "
                                        "[EMAIL] [IBAN] [CARD] [PHONE] before anything is learned.")]
ScrubVat = Annotated[bool, typer.Option("--scrub-vat", help="With --scrub-pii: also replace VAT IDs with [VAT].")]
PresetName = StrEnum("PresetName", {name: name for name in PRESETS})
PrintConfig = Annotated[bool, typer.Option("--print-config", help="Print the effective configuration (preset, "
                                           "--config file and flags) as TOML and exit; --config reads it back.")]

# What the flags of `pretrain` and `finetune` mean; their defaults are the stage config's (tinylm.config), shown by
# --help from there. None means "not given": a --config file, then the defaults, decide.
TRAIN_HELP = {
    "max_steps": "Optimisation steps (default: the preset's).",
    "epochs": "Passes over the data.",
    "max_minutes": "Wall-clock budget: train as many steps as fit, the LR schedule fitted to it.",
    "batch_size": "Sequences per forward pass, per process.",
    "grad_accum": "Micro-batches of --batch-size summed per step on each process: a step's global batch is "
                  "batch-size x grad-accum x processes (torchrun).",
    "lr": "Peak learning rate.",
    "seq_len": "Tokens per sequence.",
    "mlm_probability": "Share of tokens masked and predicted.",
    "embedding_init": "cooccurrence: word vectors from the corpus's co-occurrence counts; random: BERT's.",
    "val_fraction": "Share of the data held out for validation.",
    "val_every": "Also validate every N steps inside an epoch (the best point may lie inside a long one).",
    "pooling": "max or mean of the token states (both learn fast), or cls (BERT's [CLS] pooler; exports to "
               "transformers).",
    "class_weights": "balanced: weigh each class in the loss by n / (classes x its count), for imbalanced labels "
                     "(multi-label: each label's positives by its negatives / positives, at most 50).",
    "long_docs": "truncate: keep a long document's beginning; windows: read it in windows of --seq-len (up to 8), "
                 "averaging their predictions (eval and predict follow).",
    "ema_decay": "Validate and keep a moving average of the weights with this decay; 0 keeps the last weights.",
    "dropout": "Hidden and attention dropout while fine-tuning (pretraining runs without).",
    "seed": "Random seed.",
    "text_column": "Column (CSV/TSV header or JSONL key) holding the text.",
    "label_column": "Column holding the label (default: label, or labels where a table has no label column).",
    "multi_label": "Each document has any number of labels, joined by --label-separator in its cell (empty: none): "
                   "a sigmoid per label, binary cross-entropy, thresholds chosen on validation; keeps the best "
                   "validation micro-F1.",
    "label_separator": "With --multi-label: what joins the label names in a cell.",
    "thresholds": "With --multi-label: per-label (each label's best F1 on validation; the global one for labels with "
                  "fewer than 3 validation positives) or global (one threshold, the best micro-F1).",
}
PRETRAIN_HELP = {
    "batch_size": "Rows per forward pass, per process (when unset: 4,096 tokens' worth).",
    "seq_len": "Tokens per packed row (when unset: the shortest of 32/64/128 that holds 95% of the documents whole).",
    "val_fraction": "Share of the rows held out to log the MLM loss on unseen text (at most 256 rows; 0: none).",
    "max_minutes": "Wall-clock budget: train as many steps as fit (at most --max-steps if given), the LR schedule "
                   "fitted to it.",
    "epochs": "Passes over the corpus, instead of --max-steps.",
    "lr": "Peak learning rate (default: the preset's).",
}
FINETUNE_HELP = {
    "batch_size": "Documents per forward pass, per process.",
    "seq_len": "Longest document in tokens (when unset: 256, or the base's limit); longer ones are truncated, or "
               "read in windows (--long-docs).",
    "val_fraction": "Share of TRAIN held out when --val is not given.",
    "max_minutes": "Wall-clock budget: as many whole epochs (up to --epochs) as fit.",
}
PRETRAIN_FLAGS = ("max_steps", "epochs", "max_minutes", "batch_size", "grad_accum", "lr", "seq_len", "mlm_probability",
                  "embedding_init", "val_fraction", "seed", "text_column")
FINETUNE_FLAGS = ("epochs", "max_minutes", "lr", "batch_size", "grad_accum", "seq_len", "val_fraction", "val_every",
                  "pooling", "class_weights", "long_docs", "ema_decay", "dropout", "seed", "text_column", "label_column",
                  "multi_label", "label_separator", "thresholds")
CHOICES = {"embedding_init": EmbeddingInit, "pooling": Pooling, "class_weights": ClassWeights, "long_docs": LongDocs,
           "thresholds": Thresholds}

# The options of every training run (tinylm.config.RunOptions), declared once for both stages.
RUN_OPTIONS = {
    "precision": (PrecisionOpt, Precision.auto),
    "device": (DeviceOpt, Device.auto),
    "compile": (Annotated[bool, typer.Option("--compile", help="torch.compile the model (slow start; may be faster on "
                                             "long runs, see docs/performance.md).")], False),
    "overwrite": (Overwrite, False),
    "resume": (Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its newest checkpoint "
                                            "(give the same arguments as the first time).")], False),
    "save_every": (Annotated[Optional[int], typer.Option(help="Save a resumable checkpoint every N steps.")], None),
    "save_minutes": (Annotated[float, typer.Option(help="Save a resumable checkpoint every M minutes.")], 10.0),
    "keep_checkpoints": (Annotated[int, typer.Option(help="Resumable checkpoints to keep (the newest).")], 2),
    "on_nan": (Annotated[OnNan, typer.Option(help="stop: end with an error on a non-finite loss or gradient; skip: "
                                            "drop that batch and go on.")], OnNan.stop),
    "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")], False),
    "encoding": (Encoding, "utf-8"),
    "scrub_pii": (ScrubPii, False),
    "scrub_vat": (ScrubVat, False),
    "record_host": (RecordHost, False),
}


def scrub_kinds(scrub_pii: bool, scrub_vat: bool) -> tuple[str, ...] | None:
    from tinylm.pii import kinds_for

    if scrub_vat and not scrub_pii:
        raise TinyLMError("--scrub-vat adds VAT IDs to --scrub-pii; give both")
    return kinds_for(scrub_vat) if scrub_pii else None


def training_command(stage: type[StageConfig], names: tuple[str, ...], helps: dict[str, str], *extra_run: str):
    """Give a command the stage's flags `names` (passed on as `flags`, a dict of those given) and the run options
    (passed on as `run`, a RunOptions; `extra_run` names RunOptions fields the command adds as its own options).
    Declared once here, so that pretrain and finetune share their names, help and checks."""
    flag_params = [flag_parameter(stage, name, helps.get(name, TRAIN_HELP[name])) for name in names]
    run_params = [Parameter(name, Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                  for name, (annotation, default) in RUN_OPTIONS.items()]

    def decorate(command):
        declared, hints = signature(command), typing.get_type_hints(command, include_extras=True)
        own = [p.replace(annotation=hints[p.name]) for p in declared.parameters.values()
               if p.name not in ("flags", "run")]

        @functools.wraps(command)
        def wrapper(**kwargs):
            flags = {name: plain(kwargs.pop(name)) for name in names}
            options = {name: plain(kwargs.pop(name)) for name in RUN_OPTIONS}
            kinds = scrub_kinds(options.pop("scrub_pii"), options.pop("scrub_vat"))
            extra = {name: kwargs[name] for name in extra_run}
            run = RunOptions(**options, **extra, scrub_kinds=kinds, command=command_line())
            return command(**kwargs, flags=flags, run=run)

        wrapper.__signature__ = declared.replace(parameters=[*own, *flag_params, *run_params])
        return wrapper

    return decorate


def flag_parameter(stage: type[StageConfig], name: str, help: str) -> Parameter:
    """The option for a field of the stage's config: its type from the field's annotation (or its choices), None
    when not given, and --help showing the stage's default (pretraining's where every preset has the same)."""
    annotations = {f.name: str(f.type) for f in (*fields(TrainArgs), *fields(stage))}
    kind = CHOICES.get(name) or next(t for t in (bool, int, float, str) if t.__name__ in annotations[name].split(" | "))
    configs = [preset.pretrain for preset in PRESETS.values()] if stage is PretrainConfig else [stage()]
    defaults = {getattr(config.train, name, None) if hasattr(config.train, name) else getattr(config, name)
                for config in configs}
    shown = str(defaults.pop()) if len(defaults) == 1 and None not in defaults else False
    option = typer.Option(f"--{flag(name)}", help=help, show_default=False) if kind is bool else \
        typer.Option(help=help, show_default=shown)
    return Parameter(name, Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[kind], option])


def plain(value):
    """An enum member as its plain string, for configs, TOML and JSON."""
    return value.value if isinstance(value, Enum) else value


@app.callback()
def root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False):
    if debug:
        state["debug"] = True


@app.command()
def tokenize(
    data: DataArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write tokenizer.json into.")],
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size, special tokens included.")] = 8000,
    text_column: TextColumn = "text",
    lowercase: Annotated[bool, typer.Option(help="Lower-case text before tokenizing (accents are kept).")] = True,
    min_frequency: Annotated[int, typer.Option(help="Minimum count for a piece to enter the vocabulary.")] = 2,
    encoding: Encoding = "utf-8",
    scrub_pii: ScrubPii = False,
    scrub_vat: ScrubVat = False,
    record_host: RecordHost = False,
):
    """Train a BERT WordPiece tokenizer (digits split one per token) and write OUT/tokenizer.json."""
    from tinylm.tokenization import tokenize as train

    done = train(data, out_dir, vocab_size, text_column, lowercase, min_frequency, encoding,
                 scrub_kinds(scrub_pii, scrub_vat), record_host, command_line())
    out.print(f"trained a {done['vocab_size']:,}-token WordPiece vocabulary on {done['n_documents']:,} documents "
              f"-> {done['path']}")


@app.command()
@training_command(PretrainConfig, PRETRAIN_FLAGS, PRETRAIN_HELP, "cache_dir")
def pretrain(
    data: DataArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the base checkpoint.")],
    tokenizer: Annotated[Optional[Path], typer.Option(help="Folder with tokenizer.json (from `tinylm tokenize`); "
                                                      "with --init, the base's.")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Continue pretraining this base checkpoint (from `tinylm "
                                                 "pretrain` or `tinylm import`): its weights, tokenizer and size, "
                                                 "a fresh optimizer and schedule.")] = None,
    preset: Annotated[Optional[PresetName], typer.Option(help="tiny (tests), mini (minutes on a CPU), small (an hour), "
                                                         "base (BERT-base); with --init, the base's size.",
                                                         show_default="small")] = None,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with \\[model] and \\[train] tables.")] = None,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Where encoded corpora are cached (default "
                                                       "$TINYLM_CACHE or ~/.cache/tinylm).")] = None,
    print_config: PrintConfig = False,
    *, flags: dict, run: RunOptions,
):
    """Pretrain a BERT encoder with masked language modelling (30% dynamic masking, 80/10/10; no dropout).

    Documents are packed into full sequences separated by [SEP]; a document longer than a sequence
    continues in the next one. With --init BASE, pretraining continues from an existing base on new text
    (docs/pretraining.md).
    """
    from tinylm.pretrain import base_config, pretrain as pretrain_base

    if tokenizer is None and init is None:
        raise TinyLMError("pretrain needs --tokenizer DIR (from `tinylm tokenize`), or --init BASE to continue "
                          "pretraining a base checkpoint")
    base = base_config(init) if init is not None else None
    model_config, cfg = resolve_pretrain(plain(preset), config, flags, base, str(init))
    if print_config:
        print(to_toml({"model": model_config, "train": cfg}), end="")
        return
    summary = pretrain_base(data, tokenizer, out_dir, model_config, cfg, run, init)
    if rank() == 0:
        held_out = f" (held-out {summary['val_loss']:.4f})" if "val_loss" in summary else ""
        out.print(f"pretrained {summary['steps']:,} steps in {summary['elapsed_s']:.0f}s "
                  f"({summary['tokens_per_s']:,.0f} tok/s), final MLM loss {summary['loss']:.4f}{held_out} -> {out_dir}")


@app.command()
@training_command(FinetuneConfig, FINETUNE_FLAGS, FINETUNE_HELP)
def finetune(
    train_data: Annotated[Path, typer.Argument(metavar="TRAIN", help="Labelled .csv, .tsv or .jsonl file.")],
    base: Annotated[Path, typer.Option(help="Base checkpoint folder from `tinylm pretrain`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the classifier checkpoint.")],
    val: Annotated[Optional[Path], typer.Option(help="Validation file; default: a stratified split of TRAIN.")] = None,
    unlabelled: Annotated[Optional[list[Path]], typer.Option(
        help="Unlabelled documents to learn from too (any DATA format; repeat the flag for several): self-training "
             "rounds with pseudo-labels, keeping what validation prefers (docs/finetuning.md#unlabelled-documents).",
        show_default=False)] = None,
    rounds: Annotated[Optional[int], typer.Option(
        help=f"With --unlabelled: self-training rounds after the plain fine-tune \\[default: {SELF_TRAINING_ROUNDS}].",
        show_default=False)] = None,
    ngram_teacher: Annotated[bool, typer.Option(
        help="With --unlabelled: a bag-of-n-grams classifier (TF-IDF + logistic regression) chooses the pseudo-labels "
             "together with the transformer.")] = True,
    soft_targets: Annotated[bool, typer.Option(
        help="With --unlabelled: the students learn the teachers' class probabilities instead of their labels.")] = False,
    ngram_cross_fit: Annotated[bool, typer.Option(
        help="With --unlabelled: the n-gram teacher labels the pool after learning the validation documents too, "
             "calibrated by a fit without them.")] = False,
    config: Annotated[Optional[Path], typer.Option(help="TOML file with a \\[train] table.")] = None,
    print_config: PrintConfig = False,
    *, flags: dict, run: RunOptions,
):
    """Fine-tune a base checkpoint for text classification; keeps the epoch with the best validation accuracy.

    Documents longer than --seq-len tokens are truncated (the beginning is kept), or read in windows with
    --long-docs windows.
    """
    from tinylm.finetune import finetune as finetune_classifier
    from tinylm.self_training import SelfTraining

    cfg = resolve_finetune(config, flags)
    if print_config:
        print(to_toml({"train": cfg}), end="")
        return
    given = [flag for flag, on in (("--rounds", rounds is not None), ("--no-ngram-teacher", not ngram_teacher),
                                   ("--soft-targets", soft_targets), ("--ngram-cross-fit", ngram_cross_fit)) if on]
    if given and not unlabelled:
        raise TinyLMError(f"{given[0]} is for self-training: add --unlabelled DATA")
    rounds = SELF_TRAINING_ROUNDS if rounds is None else rounds
    self_training = SelfTraining(list(unlabelled), rounds, ngram_teacher, soft_targets,
                                 ngram_cross_fit) if unlabelled else None
    best = finetune_classifier(train_data, base, out_dir, cfg, val, run, self_training)["best"]
    if rank() == 0 and cfg.multi_label:
        out.print(f"best validation micro-F1 {best['val_micro_f1']:.4f} (macro-F1 {best['val_macro_f1']:.4f}, subset "
                  f"accuracy {best['val_subset_accuracy']:.4f}) at epoch {best['epoch']} (step {best['step']:,}) -> {out_dir}")
    elif rank() == 0:
        where = f"round {best['round']}, " if "round" in best else ""
        out.print(f"best validation accuracy {best['val_accuracy']:.4f} (macro-F1 {best['val_macro_f1']:.4f}) "
                  f"at {where}epoch {best['epoch']} (step {best['step']:,}) -> {out_dir}")


@app.command("eval")
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="Classifier or base (MLM) checkpoint folder, or a classifier's "
                                               "ONNX export.")],
    data: Annotated[Path, typer.Argument(help="A classifier: a labelled .csv, .tsv or .jsonl file. A base checkpoint: "
                                         "held-out text in any DATA format (see `tinylm tokenize --help`).")],
    text_column: TextColumn = "text",
    label_column: LabelColumn = "label",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Also write the report to this .json file "
                                                     "(`tinylm report` draws eval*.json files of a run folder).")] = None,
    errors_file: Annotated[Optional[Path], typer.Option("--errors", help="Classifier: write the misclassified documents "
                                                        "(.jsonl or .csv) with both labels and the probabilities.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Base checkpoint: seed of the fixed masking.", show_default="0")] = None,
    batch_size: Annotated[int, typer.Option(help="Documents (classifier) or packed rows (base) per forward pass.")] = 64,
    encoding: Encoding = "utf-8",
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
):
    """Evaluate a checkpoint on held-out data.

    A classifier: accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix; a multi-label one:
    micro-, macro- and samples-F1, subset accuracy and per-label precision/recall/F1 at its stored thresholds.
    A base checkpoint: masked-token accuracy, cross-entropy and perplexity, with the text packed and masked as in
    pretraining, but with a fixed seed so that runs and checkpoints can be compared.
    """
    from tinylm.evaluate import evaluate_checkpoint

    report, n_errors = evaluate_checkpoint(checkpoint, data, text_column, label_column, batch_size, encoding, seed,
                                           device.value, precision.value, errors_file, out_file)
    if as_json:
        print(json.dumps(report))
        return
    if report.get("kind") == "mlm":
        print_mlm_report(report)
    elif report.get("problem_type") == "multi_label_classification":
        print_multi_label_report(report)
    else:
        print_report(report)
    if errors_file is not None:
        out.print(f"{n_errors:,} misclassified documents -> {errors_file}", highlight=False)
    if out_file is not None:
        out.print(f"report -> {out_file}", highlight=False)


def print_mlm_report(report: dict):
    out.print(f"masked-token accuracy [bold]{report['accuracy']:.4f}[/]   perplexity [bold]{report['perplexity']:.2f}[/]   "
              f"cross-entropy {report['cross_entropy']:.4f}   {report['n_tokens']:,} masked tokens "
              f"({report['mlm_probability']:.0%} of {report['n_documents']:,} documents packed in rows of "
              f"{report['seq_len']}, seed {report['seed']})", highlight=False)


def print_report(report: dict):
    labels = report["labels"]
    out.print(f"accuracy [bold]{report['accuracy']:.4f}[/]   macro-F1 [bold]{report['macro_f1']:.4f}[/]   n {report['n']}")
    table = Table("label", "precision", "recall", "F1", "support", title="per class")
    for label, c in report["per_class"].items():
        table.add_row(label, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"]))
    out.print(table)
    confusion = Table("true \\ predicted", *labels, title="confusion matrix")
    for i, (label, row) in enumerate(zip(labels, report["confusion"])):
        confusion.add_row(label, *(f"[bold]{v}[/]" if i == j else str(v) for j, v in enumerate(row)))
    out.print(confusion)


def print_multi_label_report(report: dict):
    out.print(f"micro-F1 [bold]{report['micro_f1']:.4f}[/]   macro-F1 [bold]{report['macro_f1']:.4f}[/]   samples-F1 "
              f"{report['samples_f1']:.4f}   subset accuracy {report['subset_accuracy']:.4f}   n {report['n']}")
    table = Table("label", "precision", "recall", "F1", "support", "threshold", title="per label")
    for label, c in report["per_class"].items():
        table.add_row(label, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}", str(c["support"]),
                      f"{report['thresholds'][label]:.2f}")
    out.print(table)


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="Classifier checkpoint folder, or its ONNX export "
                                               "(run by ONNX Runtime).")],
    data: Annotated[Path, typer.Argument(metavar="INPUT", help=FORMATS_HELP)],
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write .jsonl or .csv here; default: JSONL on stdout.")] = None,
    text_column: TextColumn = "text",
    id_column: Annotated[Optional[str], typer.Option(help="Column to copy into each output row as `id`.")] = None,
    batch_size: Annotated[int, typer.Option(help="Documents per forward pass.")] = 64,
    encoding: Encoding = "utf-8",
    scrub_pii: Annotated[bool, typer.Option("--scrub-pii", help="Scrub PII from the input (automatic when the "
                                            "classifier was trained with --scrub-pii).")] = False,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
):
    """Label new documents: one row per input document, in input order, with the class probabilities.

    A multi-label classifier gives each row "labels", a list (in CSV: joined by its label separator).
    """
    from tinylm.evaluate import check_suffix, label_separator, predict as run, write_rows

    check_suffix(out_file, (".jsonl", ".csv"), "--out")
    rows = run(checkpoint, data, text_column, id_column, batch_size, encoding, scrub_pii, device.value, precision.value)
    if out_file is None:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return
    answer = "labels" if "labels" in rows[0] else "label"
    write_rows(out_file, rows, [*(["id"] if id_column else []), answer], list(rows[0]["probabilities"]),
               label_separator(checkpoint))
    counts = {}
    for row in rows:
        for label in row["labels"] if answer == "labels" else [row["label"]]:
            counts[label] = counts.get(label, 0) + 1
    out.print(f"labelled {len(rows):,} documents -> {out_file}  ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})",
              highlight=False)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A pretrain or finetune --out folder (with metrics.jsonl).")],
    eval_files: Annotated[Optional[list[Path]], typer.Option("--eval", help="Classifier report(s) from `tinylm eval --out` "
                                                             "to draw; default: RUN_DIR/eval*.json.")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for the PNG files; default: RUN_DIR.")] = None,
):
    """Draw a run's curves as PNG files: loss.png (training loss and learning rate by step), validation.png
    (validation accuracy, or multi-label micro-F1, and macro-F1 by epoch, when logged) and confusion.png per
    classifier evaluation report (label_f1.png, each label's F1, for a multi-label one).

    Needs matplotlib, the optional extra "plot" of tinylm (or: pip install matplotlib).
    """
    from tinylm.report import draw_report

    for path in draw_report(run_dir, eval_files, out_dir):
        out.print(f"wrote {path}", highlight=False)


@app.command()
def export(
    checkpoint: Annotated[Path, typer.Argument(metavar="CKPT", help="Base or classifier checkpoint folder.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Folder to write the exported model into.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="hf: a folder transformers loads with from_pretrained; "
                                              "onnx: model.onnx for ONNX Runtime, served by `tinylm predict OUT_DIR`."
                                              )] = ExportFormat.hf,
    int8: Annotated[bool, typer.Option("--int8", help="ONNX only: quantise the linear layers' weights to int8 "
                                       "(faster on a CPU; see docs/deploy.md for what it costs).")] = False,
    overwrite: Overwrite = False,
):
    """Export a checkpoint to serve it elsewhere: hf = Hugging Face transformers, onnx = ONNX Runtime. Offline."""
    if fmt == ExportFormat.onnx:
        from tinylm.onnx_export import export_onnx

        summary = export_onnx(checkpoint, out_dir, overwrite, int8)
        out.print(f"exported the {summary['kind']} as ONNX ({summary['precision']}) -> {out_dir}  (serve it with "
                  f"`tinylm predict {out_dir} INPUT`, or ONNX Runtime and tokenizer.json: docs/deploy.md)",
                  highlight=False)
        return
    if int8:
        raise TinyLMError("--int8 quantises an ONNX export; add --format onnx")
    from tinylm.hf import export_hf

    summary = export_hf(checkpoint, out_dir, overwrite)
    loader = "AutoModelForMaskedLM" if summary["kind"] == "mlm" else "AutoModelForSequenceClassification"
    remote = ", trust_remote_code=True: the pooling's code is in the folder" if summary["remote_code"] else ""
    out.print(f"exported {summary['architecture']} -> {out_dir}  (load with transformers' {loader}"
              f".from_pretrained(OUT_DIR{remote}) and AutoTokenizer.from_pretrained)", highlight=False)
    if summary.get("long_docs") == "windows":
        out.print("note: this classifier reads long documents in windows; transformers reads the first window only. "
                  "`--format onnx` with `tinylm predict` serves the windows", highlight=False)
    if importlib.util.find_spec("transformers") is None:  # export itself needs no transformers; loading does
        out.print("note: transformers is not installed here; `pip install tinylm[hf]` adds it", highlight=False)


@app.command("import")
def import_(
    hf_dir: Annotated[Path, typer.Argument(metavar="HF_DIR", help="Local BERT folder from transformers' save_pretrained.")],
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR", help="Folder for the tinylm checkpoint.")],
    overwrite: Overwrite = False,
):
    """Import a local Hugging Face BERT (config.json, model.safetensors, tokenizer) as a tinylm checkpoint."""
    from tinylm.hf import import_hf

    summary = import_hf(hf_dir, out_dir, overwrite)
    what = "base checkpoint" if summary["kind"] == "mlm" else f"classifier checkpoint ({summary['num_labels']} labels)"
    out.print(f"imported {summary['architecture']} as a tinylm {what} -> {out_dir}", highlight=False)
    for note in summary["notes"]:
        out.print(f"  note: {note}", highlight=False)


@app.command()
def inspect(
    checkpoint: Annotated[Path, typer.Argument(metavar="CKPT", help="Tokenizer, checkpoint or export folder.")],
    data: Annotated[Optional[list[Path]], typer.Argument(metavar="[DATA]...", help="Files for --verify.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a summary.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Hash each DATA file and say whether it is among the "
                                         "training inputs (of this folder or any parent).")] = False,
):
    """What a model folder was trained on: kind, sizes, labels, input files and hashes, parents, metrics.

    `tinylm inspect CKPT --verify DATA...` checks whether the given files were (or were not) trained on.
    """
    from tinylm.inspection import inspect_folder, print_summary, verify_files

    if verify and not data:
        raise TinyLMError("--verify needs the files to check: tinylm inspect CKPT --verify DATA...")
    if data and not verify:
        raise TinyLMError("DATA files are only for --verify: tinylm inspect CKPT --verify DATA...")
    summary = inspect_folder(checkpoint)
    if verify:
        summary["verify"] = verify_files(summary, data)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    print_summary(out, summary)


def main(argv: list[str] | None = None):
    try:
        code = app(args=argv, prog_name="tinylm", standalone_mode=False)
    except UsageProblem as e:  # a missing or malformed option, a choice that is not one: one line, as ours
        if type(e).__name__ == "NoArgsIsHelpError":  # plain `tinylm`: the help
            e.show()
            sys.exit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        print(f"error: {e.format_message()}{where}", file=sys.stderr)
        sys.exit(e.exit_code)
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except TinyLMError as e:
        if state["debug"]:
            raise
        if rank() == 0 or not isinstance(e, Interrupted):  # under torchrun, rank 0 reports a stop for all
            print(f"error: {e}" if rank() == 0 else f"error (process {rank()}): {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug, or an OS failure we did not foresee: still one line, unless --debug
        if state["debug"]:
            raise
        message = " ".join(str(e).split())[:300]
        print(f"error: {type(e).__name__}: {message} (run `tinylm --debug ...` for the traceback)", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)  # an exit code from click (0 after --help, 130 for Ctrl-C)


if __name__ == "__main__":
    main()

"""`tinylm report`: PNG plots of a run folder's metrics.jsonl and of classifier evaluation reports.

matplotlib is an optional extra (`pip install 'tinylm[plot]'`): it is imported only here, after the inputs have
been read and checked, and used through Figure objects (no pyplot), so no global backend state is touched.
"""

from __future__ import annotations

import math
from pathlib import Path

from tinylm.files import METRICS_FILE, read_json
from tinylm.data import table_rows
from tinylm.errors import TinyLMError
from tinylm.labels import MULTI_LABEL

NUMBER_KEYS = ("step", "loss", "lr", "epoch", "epoch_fraction", "val_accuracy", "val_macro_f1", "val_loss",
               "val_micro_f1", "val_subset_accuracy")  # the keys plotted; others are ignored
DPI = 120


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl. Unknown keys are kept; a plotted key must hold a number."""
    if not path.is_file():
        raise TinyLMError(f"{path.parent} has no {METRICS_FILE}: give a folder written by `tinylm pretrain` or "
                          "`tinylm finetune`")
    records = []
    for number, record in table_rows(path, "utf-8"):  # the JSONL reader of the data files, errors and all
        for key in NUMBER_KEYS:
            value = record.get(key)
            if key in record and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise TinyLMError(f"{path}:{number}: {key!r} must be a number, got {value!r}")
        records.append(record)
    if not records:
        raise TinyLMError(f"{path} is empty: the run has not logged a step yet")
    return records


def read_eval_report(path: Path) -> dict:
    """A classifier report from `tinylm eval --out`, checked: labels and a square confusion matrix of counts."""
    if not Path(path).is_file():
        raise TinyLMError(f"evaluation report {path} does not exist")
    return check_eval_report(read_json(path), path)


def check_eval_report(report: dict, path: Path) -> dict:
    if report.get("problem_type") == MULTI_LABEL:  # no confusion matrix: a bar per label's F1 is drawn instead
        per_class = report.get("per_class")
        if not isinstance(per_class, dict) or not per_class or not all(
                isinstance(c, dict) and isinstance(c.get("f1"), (int, float)) for c in per_class.values()):
            raise TinyLMError(f"{path}: a multi-label report needs 'per_class' with an 'f1' per label")
        return report
    labels, confusion = report.get("labels"), report.get("confusion")
    if report.get("kind") == "mlm" or confusion is None:
        raise TinyLMError(f"{path} is not a classifier evaluation report (no confusion matrix); write one with "
                          "`tinylm eval CLASSIFIER DATA --out FILE.json`")
    k = len(labels) if isinstance(labels, list) else 0
    square = isinstance(confusion, list) and len(confusion) == k and all(
        isinstance(row, list) and len(row) == k and all(isinstance(v, int) and v >= 0 for v in row) for row in confusion)
    if not k or not square:
        raise TinyLMError(f"{path}: 'confusion' must be a {k or 'k'} x {k or 'k'} matrix of counts, one row and column "
                          "per entry of 'labels'")
    return report


def found_eval_reports(run_dir: Path) -> list[tuple[Path, dict]]:
    """RUN_DIR/eval*.json, checked; a base checkpoint's report (kind "mlm") has no confusion and is passed over."""
    reports = []
    for path in sorted(p for p in run_dir.glob("eval*.json") if p.is_file()):
        report = read_json(path)
        if report.get("kind") != "mlm":
            reports.append((path, check_eval_report(report, path)))
    return reports


def confusion_name(path: Path, kind: str = "confusion") -> str:
    """eval.json -> confusion.png, eval_test.json -> confusion_test.png, other.json -> confusion_other.png (kind
    "label_f1" for multi-label reports: label_f1.png, ...)."""
    stem = path.stem
    return kind + (stem[len("eval"):] if stem.startswith("eval") else f"_{stem}") + ".png"


def figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise TinyLMError("tinylm report draws with matplotlib, which is not installed: "
                          "pip install 'tinylm[plot]' (or pip install matplotlib)") from None
    return Figure


def draw_report(run_dir: Path, eval_files: list[Path] | None = None, out_dir: Path | None = None) -> list[Path]:
    """Write loss.png, validation.png (when the run logged validation) and a confusion PNG per classifier report
    (`eval_files`, else RUN_DIR/eval*.json) into out_dir (default run_dir). Returns the paths written."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TinyLMError(f"run folder {run_dir} does not exist")
    metrics_path = run_dir / METRICS_FILE
    records = read_metrics(metrics_path)
    steps = [r for r in records if "step" in r and "loss" in r]
    epochs = [r for r in records if "epoch" in r and ("val_accuracy" in r or "val_micro_f1" in r)]
    if not steps and not epochs:
        raise TinyLMError(f"{metrics_path} has no training records (step and loss) nor validation records "
                          "(epoch and val_accuracy) to draw")
    reports = [(Path(p), read_eval_report(p)) for p in eval_files] if eval_files else found_eval_reports(run_dir)

    figure = figure_class()
    out_dir = Path(out_dir or run_dir)
    drawings = []
    if steps:
        held_out = [r for r in records if "step" in r and "val_loss" in r]
        drawings.append((out_dir / "loss.png", draw_loss(figure, steps, run_dir.name, held_out)))
    if epochs:
        drawings.append((out_dir / "validation.png", draw_validation(figure, epochs, run_dir.name)))
    for p, report in reports:
        if report.get("problem_type") == MULTI_LABEL:
            drawings.append((out_dir / confusion_name(p, "label_f1"), draw_label_f1(figure, report, p.name)))
        else:
            drawings.append((out_dir / confusion_name(p), draw_confusion(figure, report, p.name)))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, fig in drawings:
            fig.savefig(path, dpi=DPI)
    except OSError as e:
        raise TinyLMError(f"cannot write to {out_dir}: {e.strerror}") from None
    return [path for path, _ in drawings]


def draw_loss(figure, records: list[dict], title: str, held_out: list[dict] = ()):
    """Training loss over steps (with pretraining's held-out loss, when logged), and below it the learning rate
    (warmup and decay) on the same step axis."""
    from matplotlib.ticker import MaxNLocator

    with_lr = [r for r in records if "lr" in r]
    marker = "o" if len(records) <= 30 else None  # a short run's few points stay visible
    fig = figure(figsize=(8, 6 if with_lr else 4), layout="constrained")
    axes = fig.subplots(2 if with_lr else 1, 1, sharex=True, squeeze=False, height_ratios=[2, 1] if with_lr else None)
    loss_ax = axes[0][0]
    loss_ax.plot([r["step"] for r in records], [r["loss"] for r in records], color="tab:blue", marker=marker,
                 label="training")
    if held_out:
        loss_ax.plot([r["step"] for r in held_out], [r["val_loss"] for r in held_out], color="tab:red", marker="o",
                     label="held out")
        loss_ax.legend(loc="upper right")
    loss_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set_ylabel("loss")
    loss_ax.set_title(f"{title}: {'training and held-out' if held_out else 'training'} loss" +
                      (" and learning rate" if with_lr else ""))
    loss_ax.grid(alpha=0.3)
    if with_lr:
        lr_ax = axes[1][0]
        lr_ax.plot([r["step"] for r in with_lr], [r["lr"] for r in with_lr], color="tab:orange", marker=marker)
        lr_ax.set_ylabel("learning rate")
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        lr_ax.grid(alpha=0.3)
    axes[-1][0].set_xlabel("step")
    return fig


def draw_validation(figure, records: list[dict], title: str):
    """Validation accuracy (and macro-F1) per epoch; the best epoch by accuracy is the one finetune kept."""
    from matplotlib.ticker import MaxNLocator

    fig = figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    def epochs_done(r):  # a budget's last, partial epoch sits at its fraction
        return r["epoch"] - 1 + r.get("epoch_fraction", 1.0)

    key, name = ("val_micro_f1", "micro-F1") if "val_micro_f1" in records[0] else ("val_accuracy", "accuracy")
    ax.plot([epochs_done(r) for r in records], [r[key] for r in records], marker="o", label=name)
    f1 = [r for r in records if "val_macro_f1" in r]
    if f1:
        ax.plot([epochs_done(r) for r in f1], [r["val_macro_f1"] for r in f1], marker="s", label="macro-F1")
    best = max(records, key=lambda r: r[key])
    ax.annotate(f"best {best[key]:.3f}", (epochs_done(best), best[key]), textcoords="offset points",
                xytext=(0, 8), ha="center")
    ax.set(xlabel="epoch", ylabel="validation", ylim=(0, 1.1), title=f"{title}: validation {name} and macro-F1")
    ax.xaxis.set_major_locator(MaxNLocator(integer=all("epoch_fraction" not in r for r in records)))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def draw_label_f1(figure, report: dict, title: str):
    """A multi-label report: each label's F1 as a bar, labels by support (most frequent at the top)."""
    rows = sorted(report["per_class"].items(), key=lambda item: -item[1].get("support", 0))
    fig = figure(figsize=(7, max(3.0, 0.18 * len(rows) + 1.5)), layout="constrained")
    ax = fig.subplots()
    ax.barh(range(len(rows)), [c["f1"] for _, c in rows], color="tab:blue")
    size = max(5, min(10, 400 / len(rows)))
    ax.set_yticks(range(len(rows)), [f"{label} ({c.get('support', 0)})" for label, c in rows], fontsize=size)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="F1 (support in brackets)")
    figures = [f"{name} {report[key]:.3f}" for key, name in (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"))
               if isinstance(report.get(key), (int, float)) and math.isfinite(report[key])]
    ax.set_title(f"{title}: " + ", ".join(figures + [f"n {report.get('n', '?')}"]))
    return fig


def draw_confusion(figure, report: dict, title: str):
    """Counts in the cells; colours are each true class's row shares, so small classes stay readable."""
    labels, confusion = report["labels"], report["confusion"]
    k = len(labels)
    shares = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in confusion]
    side = max(4.5, 0.55 * k + 2.5)
    fig = figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class", shrink=0.8)
    size = max(5, min(10, 120 / k))
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(confusion[i][j]), ha="center", va="center", fontsize=size,
                    color="white" if shares[i][j] > 0.5 else "black")
    ax.set_xticks(range(k), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=size)
    ax.set_yticks(range(k), labels, fontsize=size)
    ax.set(xlabel="predicted", ylabel="true")
    figures = [f"{name} {report[key]:.3f}" for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))
               if isinstance(report.get(key), (int, float)) and math.isfinite(report[key])]
    ax.set_title(f"{title}: " + ", ".join(figures + [f"n {sum(map(sum, confusion))}"]))
    return fig

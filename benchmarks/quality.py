"""Classification quality on real data at a fixed wall-clock budget: tinylm (pretrained on the train texts),
tinylm without pretraining, and TF-IDF + logistic regression, on the same splits, in one run.

    python benchmarks/quality.py                                   # 15 + 5 minutes per data set (about 2 h)
    python benchmarks/quality.py --datasets trec --pretrain-minutes 1 --finetune-minutes 1
    python benchmarks/quality.py --datasets sst2 --seeds 3               # 3 fine-tuning runs per column
    python benchmarks/quality.py --datasets agnews --labelled 1000       # few labels, all texts pretrained on
    python benchmarks/quality.py --datasets agnews --labelled 100 --columns unlabelled,tinylm --finetune-minutes 10

For each data set in ../shared/datasets the tinylm CLI runs exactly as a user would: `tokenize` and `pretrain
--max-minutes P` on the train texts (labels unused), `finetune --max-minutes F`, `eval` on the test file. The
no-pretraining column fine-tunes the same model from random weights with the same budget. `--labelled N` keeps
the labels of a stratified sample of N train documents only (fine-tuning and TF-IDF see those; pretraining still
reads every train text): the setting of a company with many documents and few of them labelled. The unlabelled
column (`--columns`) fine-tunes with `--unlabelled` on every train text, as a company would give it its documents.
TF-IDF (word
1-2-grams + char 2-5-grams) + logistic regression (C=10) needs scikit-learn (`pip install 'tinylm[bench]'`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from statistics import mean

from tinylm.files import METRICS_FILE
from tinylm.report import read_metrics

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
SPLITS = {"sst2": ("train.csv", "dev.csv"), "trec": ("train.csv", "test.csv"), "agnews": ("train.csv", "test.csv"),
          "midd_invoices": ("train.csv", "test.csv"), "reuters_modapte": ("train.csv", "test.csv")}
# The fine-tuned columns: the base they start from (a folder of the data set's) and their extra flags
COLUMNS = {"tinylm": ("base", []), "unlabelled": ("base", ["--unlabelled", "TRAIN"]),
           "no_pretraining": ("random", [])}
# Multi-label data sets and their fine-tuning flags. Reuters: in a 5-minute budget, the first 64 tokens of each
# story (headline and lead) for 11 epochs beat whole stories in 256-token windows for 2 epochs, on validation
# micro-/macro-F1 0.893 / 0.518 against 0.811 / 0.267 (128 tokens: 0.884 / 0.426; docs/finetuning.md#reuters-21578).
MULTI_LABEL = {"reuters_modapte": ["--multi-label", "--seq-len", "64"]}


def tinylm(*args, env=None) -> str:
    done = subprocess.run([sys.executable, "-m", "tinylm", *map(str, args)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"tinylm {' '.join(map(str, args))} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def random_base(pretrained: Path, out: Path):
    """The pretrained base's architecture and tokenizer with fresh random weights: 'pretraining skipped'."""
    import torch

    from tinylm.checkpoint import load_checkpoint, save_checkpoint
    from tinylm.model import BertForMaskedLM

    model, tokenizer, _ = load_checkpoint(pretrained, expect_kind="mlm")
    args = json.loads((pretrained / "training_args.json").read_text())
    torch.manual_seed(0)
    save_checkpoint(out, BertForMaskedLM(replace(model.config)), tokenizer,
                    {**args, "stage": "random-init", "summary": {"steps": 0}})


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    """Texts and label cells (the column `label`, or `labels` in multi-label files)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    column = "label" if not rows or "label" in rows[0] else "labels"
    return [r["text"] for r in rows], [r[column] for r in rows]


def write_csv(path: Path, rows: list[dict]):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)


def stratified_rows(labels: list[str], n: int, seed: int) -> list[int]:
    """A stratified sample of n of the rows (each class in its share, at least one row each), in random order."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    classes = sorted(by_label)
    share = {label: n * len(by_label[label]) / len(labels) for label in classes}
    quota = {label: max(1, int(share[label])) for label in classes}
    # exactly n in all: the rows left over go to the largest remainders, or are taken from the largest classes
    for label in sorted(classes, key=lambda label: share[label] - int(share[label]), reverse=True):
        if sum(quota.values()) < n and quota[label] < len(by_label[label]):
            quota[label] += 1
    while sum(quota.values()) > n and max(quota.values()) > 1:
        quota[max(classes, key=quota.get)] -= 1
    rng = random.Random(seed)
    sample = [i for label in classes for i in rng.sample(by_label[label], quota[label])]
    rng.shuffle(sample)
    return sample


def labelled_sample(train: Path, n: int, out: Path, seed: int = 0) -> Path:
    """A stratified sample of n rows of train (each class in its share, at least one row each), written as CSV."""
    texts, labels = read_csv(train)
    if n >= len(labels):
        return train
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out, [{"text": texts[i], "label": labels[i]} for i in stratified_rows(labels, n, seed)])
    return out


def dev_split(train: Path, n: int, folder: Path, seed: int = 1) -> tuple[Path, Path]:
    """(the rest of train, a stratified n of its documents): with --dev, the second is the scored split and the
    first is all the benchmark reads (pretraining, labels, the unlabelled pool, TF-IDF), so that settings are
    chosen without the test file, on documents that nothing before scoring has seen."""
    texts, labels = read_csv(train)
    if not 0 < n < len(labels):
        sys.exit(f"--dev {n}: {train} has {len(labels):,} documents; hold out fewer")
    held = set(stratified_rows(labels, n, seed))
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"text": t, "label": y} for t, y in zip(texts, labels)]
    write_csv(folder / "dev-train.csv", [r for i, r in enumerate(rows) if i not in held])
    write_csv(folder / "dev.csv", [r for i, r in enumerate(rows) if i in held])
    return folder / "dev-train.csv", folder / "dev.csv"


def tfidf(train: Path, test: Path) -> dict | None:
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.pipeline import make_pipeline, make_union
    except ImportError:
        return None
    x_train, y_train = read_csv(train)
    x_test, y_test = read_csv(test)
    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))
    model = make_pipeline(features, LogisticRegression(C=10, max_iter=2000)).fit(x_train, y_train)
    predicted = model.predict(x_test)
    return {"accuracy": accuracy_score(y_test, predicted), "macro_f1": f1_score(y_test, predicted, average="macro")}


def tfidf_multi_label(train: Path, test: Path) -> dict | None:
    """One-vs-rest logistic regression on the same features, each label predicted at probability 0.5."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import make_union
        from sklearn.preprocessing import MultiLabelBinarizer
    except ImportError:
        return None
    from tinylm.labels import split_labels

    x_train, y_train = read_csv(train)
    x_test, y_test = read_csv(test)
    binarizer = MultiLabelBinarizer().fit([split_labels(y) for y in y_train])
    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))
    train_x = features.fit_transform(x_train)
    model = OneVsRestClassifier(LogisticRegression(C=10, max_iter=2000)).fit(
        train_x, binarizer.transform([split_labels(y) for y in y_train]))
    predicted = model.predict_proba(features.transform(x_test)) >= 0.5
    truth = binarizer.transform([[name for name in split_labels(y) if name in binarizer.classes_] for y in y_test])
    return {"micro_f1": f1_score(truth, predicted, average="micro"),
            "macro_f1": f1_score(truth, predicted, average="macro", zero_division=0),
            "subset_accuracy": accuracy_score(truth, predicted)}


def threshold_rules(clf: Path, train: Path) -> dict:
    """Global against per-label thresholds on the fine-tune's own validation documents, without choosing and
    scoring on the same ones: the documents are cut in two halves, thresholds chosen on one half are scored on the
    other, both ways, and the two scores averaged."""
    import numpy as np

    from tinylm.checkpoint import load_checkpoint
    from tinylm.config import FinetuneConfig
    from tinylm.evaluate import multi_label_report, predict_proba
    from tinylm.finetune import LabelledData
    from tinylm.labels import choose_thresholds

    cfg = FinetuneConfig.of(**json.loads((clf / "training_args.json").read_text())["train"])
    data = LabelledData.read(train, None, cfg, "utf-8")
    model, tokenizer, _ = load_checkpoint(clf)
    probs = predict_proba(model, tokenizer, [r.text for r in data.val], cfg.train.seq_len,
                          long_docs=cfg.long_docs).numpy()
    truth = data.targets(data.val)
    halves = np.array_split(np.random.default_rng(0).permutation(len(truth)), 2)
    result = {}
    for rule in ("global", "per-label"):
        scores = []
        for chosen_on, scored_on in (halves, halves[::-1]):
            thresholds = choose_thresholds(probs[chosen_on], truth[chosen_on], rule)
            scores.append(multi_label_report(truth[scored_on], probs[scored_on] >= np.array(thresholds), data.labels))
        result[rule] = {key: mean(s[key] for s in scores) for key in ("micro_f1", "macro_f1", "subset_accuracy")}
    return {"n_validation": len(truth), **result}


def run_dataset(name: str, args, work: Path, env: dict) -> dict:
    train, test = (SHARED / name / f for f in SPLITS[name])
    folder = work / (f"{name}-dev{args.dev}" if args.dev else name)
    if args.dev:
        train, test = dev_split(train, args.dev, folder)
    start = time.perf_counter()
    multi_label = name in MULTI_LABEL
    if args.labelled and multi_label:
        sys.exit(f"--labelled samples single-label data sets; {name} is multi-label")
    labelled = labelled_sample(train, args.labelled, folder / "labelled.csv") if args.labelled else train
    if not (args.reuse_base and (folder / "base" / "model.safetensors").is_file()):
        tinylm("tokenize", train, "--out", folder / "tok", "--vocab-size", args.vocab_size, env=env)
        tinylm("pretrain", train, "--tokenizer", folder / "tok", "--out", folder / "base", "--preset", args.preset,
               "--max-minutes", args.pretrain_minutes, "--overwrite", "-q", env=env)
    random_base(folder / "base", folder / "random")
    result = {"dataset": name, "labelled": len(read_csv(labelled)[1])}
    for column in args.columns.split(","):
        base, extra = COLUMNS[column]
        base = folder / base
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):  # the same base, another split, order, dropout
            out = folder / f"clf-{column}" if seed == 0 else folder / f"clf-{column}-seed{seed}"
            clock = time.perf_counter()
            tinylm("finetune", labelled, "--base", base, "--out", out, "--max-minutes", args.finetune_minutes,
                   "--epochs", args.max_epochs, "--seed", seed, "--overwrite", "-q", *MULTI_LABEL.get(name, []),
                   *args.finetune_flags.split(), *(train if a == "TRAIN" else a for a in extra), env=env)
            minutes = (time.perf_counter() - clock) / 60
            report = json.loads(tinylm("eval", out, test, "--json", env=env))
            best = json.loads((out / "training_args.json").read_text())["best"]
            figures = ("micro_f1", "macro_f1", "subset_accuracy") if multi_label else ("accuracy", "macro_f1")
            runs.append({**{key: report[key] for key in figures}, "best_epoch": best["epoch"],
                         "best_validation": best.get("val_micro_f1" if multi_label else "val_accuracy"),
                         "best_round": best.get("round"), "epochs": epochs_run(out), "steps": best_steps(out),
                         "minutes": minutes})
        result[column] = {**{key: mean(r[key] for r in runs) for key in figures},
                          **({"runs": runs} if len(runs) > 1 else runs[0])}
        if multi_label and column == "tinylm":
            result["threshold_rules"] = threshold_rules(folder / "clf-tinylm", labelled)
    result["pretraining"] = pretraining_facts(folder / "base")
    result["tfidf"] = None if args.no_tfidf else (tfidf_multi_label if multi_label else tfidf)(labelled, test)
    result["seconds"] = time.perf_counter() - start
    return result


def epochs_run(folder: Path) -> int:
    return max((r["epoch"] for r in read_metrics(folder / METRICS_FILE) if "epoch" in r), default=0)


def best_steps(folder: Path) -> int:
    """The optimisation steps the fine-tune ran in its budget."""
    return max((r["step"] for r in read_metrics(folder / METRICS_FILE) if "step" in r), default=0)


def pretraining_facts(folder: Path) -> dict:
    """How far pretraining got in its budget: steps, tokens, tokens/s, the MLM loss of its last logged steps and
    the last loss on its held-out rows."""
    records = read_metrics(folder / METRICS_FILE)
    steps = [r for r in records if "loss" in r]
    held_out = [r["val_loss"] for r in records if "val_loss" in r]
    last = steps[-1] if steps else {}
    return {"steps": last.get("step", 0), "tokens": last.get("tokens", 0), "tokens_per_s": last.get("tokens_per_s"),
            "final_loss": sum(r["loss"] for r in steps[-5:]) / max(1, len(steps[-5:])),
            "held_out_loss": held_out[-1] if held_out else None}


def cell(figures: dict | None) -> str:
    """accuracy / macro-F1, and with several fine-tuning seeds the accuracies' range."""
    if not figures:
        return "-"
    runs = figures.get("runs", [])
    if "micro_f1" in figures:  # multi-label: micro-F1 / macro-F1 / subset accuracy, and the F1s' ranges
        spread = " / ".join(f"{min(r[k] for r in runs):.3f}-{max(r[k] for r in runs):.3f}"
                            for k in ("micro_f1", "macro_f1"))
        return (f"{figures['micro_f1']:.3f} / {figures['macro_f1']:.3f} / {figures['subset_accuracy']:.3f}"
                + (f" ({spread})" if runs else ""))
    spread = [r["accuracy"] for r in runs]
    return f"{figures['accuracy']:.3f} / {figures['macro_f1']:.3f}" + (
        f" ({min(spread):.3f}-{max(spread):.3f})" if spread else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(SPLITS))
    parser.add_argument("--pretrain-minutes", type=float, default=15)
    parser.add_argument("--finetune-minutes", type=float, default=5)
    parser.add_argument("--max-epochs", type=int, default=100, help="fine-tuning epochs if the budget allows")
    parser.add_argument("--seeds", type=int, default=1, help="fine-tuning runs per column (seeds 0..N-1): their mean, "
                        "and the range of their accuracies")
    parser.add_argument("--first-seed", type=int, default=0, help="start the seeds here (seeds F..F+N-1): to add "
                        "seeds to an earlier run")
    parser.add_argument("--preset", default="mini", help="the model size for a 15-minute CPU budget (docs/pretraining.md)")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--labelled", type=int, help="keep the labels of a stratified sample of this many train "
                        "documents (fine-tuning and TF-IDF); pretraining still reads every train text")
    parser.add_argument("--dev", type=int, help="score on this many train documents held out of everything else "
                        "instead of the test split: to choose settings without reading the test file")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-quality")
    parser.add_argument("--no-tfidf", action="store_true")
    parser.add_argument("--columns", default="tinylm,no_pretraining", help="the fine-tuned columns, of "
                        f"{', '.join(COLUMNS)} (unlabelled: `finetune --unlabelled` on the train texts)")
    parser.add_argument("--reuse-base", action="store_true", help="keep a data set's tokenizer and base from an earlier "
                        "run in --workdir (pretrained with these settings), instead of pretraining again")
    parser.add_argument("--finetune-flags", default="", help="more `tinylm finetune` flags, e.g. '--seq-len 128'")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results = []
    print(f"budgets: pretrain {args.pretrain_minutes:g} min, finetune {args.finetune_minutes:g} min; "
          f"preset {args.preset}; accuracy / macro-F1 on "
          + (f"{args.dev:,} train documents held out of everything (--dev)" if args.dev else "the test split")
          + " (multi-label: micro-F1 / macro-F1 / subset "
          "accuracy)"
          + (f"; labels of {args.labelled:,} train documents" if args.labelled else ""), flush=True)
    width = 15 if args.seeds == 1 else 29
    if args.seeds > 1 and any(name in MULTI_LABEL for name in args.datasets.split(",")):
        width = 45
    columns = args.columns.split(",")
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        sys.exit(f"unknown column {unknown[0]!r}; choose from {', '.join(COLUMNS)}")
    print(f"{'data set':14} " + " ".join(f"{c.replace('_', ' '):>{width}}" for c in columns) + f" {'TF-IDF + LR':>15}",
          flush=True)
    for name in args.datasets.split(","):
        if name not in SPLITS:
            sys.exit(f"unknown data set {name!r}; choose from {', '.join(SPLITS)}")
        result = run_dataset(name, args, args.workdir, env)
        results.append(result)
        facts = result["pretraining"]
        print(f"{name:14} " + " ".join(f"{cell(result[c]):>{width}}" for c in columns) +
              f" {cell(result['tfidf']):>15}   (pretraining {facts['steps']:,} steps, {facts['tokens']:,} tokens, "
              f"MLM loss {facts['final_loss']:.2f}, held out {facts['held_out_loss'] or float('nan'):.2f}; "
              f"{result['seconds'] / 60:.0f} min)", flush=True)
        if "threshold_rules" in result:
            rules = result["threshold_rules"]
            print(f"{'':14} thresholds on {rules['n_validation']} validation documents (chosen on one half, scored on "
                  "the other): " + ", ".join(f"{rule} micro-F1 {rules[rule]['micro_f1']:.3f} macro-F1 "
                                             f"{rules[rule]['macro_f1']:.3f}" for rule in ("global", "per-label")) +
                  "; fine-tuning steps " + " / ".join(
                      ",".join(f"{r['steps']:,}" for r in result[c].get("runs", [result[c]])) for c in columns),
                  flush=True)
        if args.json:  # after every data set, so that a long run's finished part is kept
            args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()

"""Does starting from an existing base pay? Continued pretraining (`tinylm pretrain --init`) against pretraining
from scratch for the same number of steps, on AG News text, measured by the held-out MLM loss and by a classifier.

    python benchmarks/continued_pretraining.py --work /tmp/cp                  # base 15 min, then N = 5 and 10
    python benchmarks/continued_pretraining.py --work /tmp/cp --minutes 5 --base-minutes 15 --preset mini

The tinylm CLI runs as a user would. A tokenizer and a base are trained on *other* text (SST-2 train, TREC train,
the SROIE receipts) for --base-minutes. Then, for each N in --minutes, two runs on the AG News train text: the base
continued (`--init`) and a fresh model of the same size with the base's tokenizer (the continued run keeps its
base's tokenizer, so the fresh one gets the same, or the comparison would measure the tokenizer too). Both get the
same number of steps, N times the steps per minute of the base's own run, so that the comparison does not depend
on how loaded the machine was while each ran. Each base is then scored on the first --test-rows AG News test texts
(`tinylm eval`, held-out MLM loss) and fine-tuned on --labelled stratified AG News train rows (all labels: 0), the
classifier scored on the same test rows. The base alone (no AG News at all) is the first row.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import labelled_sample  # noqa: E402  (the same stratified sample as the quality benchmark)

OTHER_TEXT = [SHARED / "sst2" / "train.csv", SHARED / "trec" / "train.csv", SHARED / "sroie_receipts" / "train"]
AGNEWS = SHARED / "agnews"


def tinylm(*args) -> tuple[str, float]:
    """Run the CLI; (stdout, seconds)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tinylm", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"tinylm {' '.join(map(str, args))} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout, time.perf_counter() - start


def first_rows(path: Path, n: int, out: Path) -> Path:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    with open(out, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def summary(base: Path) -> dict:
    return json.loads((base / "training_args.json").read_text())["summary"]


def score(name: str, base: Path, args, test: Path, labelled: Path, work: Path, steps: int, minutes: float) -> dict:
    """Held-out MLM loss of the base, and the test accuracy of a classifier fine-tuned from it."""
    mlm = json.loads(tinylm("eval", base, test, "--json")[0])
    classifier = work / f"classifier-{base.name}"
    tinylm("finetune", labelled, "--base", base, "--out", classifier, "--epochs", args.epochs, "--seq-len", 128,
           "--overwrite", "-q")
    accuracy = json.loads(tinylm("eval", classifier, test, "--json")[0])["accuracy"]
    row = {"run": name, "steps": steps, "minutes": round(minutes, 1), "heldout_mlm_loss": mlm["cross_entropy"],
           "masked_accuracy": mlm["accuracy"], "test_accuracy": accuracy}
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| run | AG News steps | minutes | held-out MLM loss | masked-token acc. | test accuracy |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['steps']:,} | {r['minutes']:g} | {r['heldout_mlm_loss']:.4f} | "
                     f"{r['masked_accuracy']:.4f} | {r['test_accuracy']:.4f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for every run (kept; reruns reuse the base)")
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--base-minutes", type=float, default=15.0)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 10.0])
    parser.add_argument("--steps-per-minute", type=float, help="default: the base run's own rate")
    parser.add_argument("--labelled", type=int, default=1000, help="labelled AG News rows to fine-tune on; 0: all")
    # 20 epochs of 29 steps, the best validation epoch kept: with 5, a well-trained encoder was still adapting when
    # the run ended (validation 0.84 and rising) while a near-unigram one had converged (0.89 from epoch 2)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--test-rows", type=int, default=2000)
    args = parser.parse_args(argv)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TINYLM_CACHE", str(work / "cache"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    print(f"commit {commit.strip()}; preset {args.preset}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.1f}",
          flush=True)

    test = first_rows(AGNEWS / "test.csv", args.test_rows, work / "test.csv")
    labelled = labelled_sample(AGNEWS / "train.csv", args.labelled, work / "labelled.csv") if args.labelled else \
        AGNEWS / "train.csv"
    tok, base = work / "tok", work / "base-other"
    if not (tok / "tokenizer.json").is_file():
        tinylm("tokenize", *OTHER_TEXT, "--out", tok)
    if not (base / "model.safetensors").is_file():
        tinylm("pretrain", *OTHER_TEXT, "--tokenizer", tok, "--out", base, "--preset", args.preset, "--max-minutes",
               args.base_minutes, "--overwrite", "-q")
    facts = summary(base)
    rate = args.steps_per_minute or facts["steps"] / (facts["elapsed_s"] / 60)
    print(f"base on other text: {facts['steps']:,} steps in {facts['elapsed_s'] / 60:.1f} min "
          f"({rate:.1f} steps/min)", flush=True)

    rows = [score("base (other text only)", base, args, test, labelled, work, 0, 0.0)]
    for minutes in args.minutes:
        steps = max(1, round(rate * minutes))
        for name, start in (("continued", ["--init", base]), ("scratch", ["--tokenizer", tok, "--preset", args.preset])):
            out = work / f"{name}-{minutes:g}min"
            if not (out / "model.safetensors").is_file():
                tinylm("pretrain", AGNEWS / "train.csv", *start, "--out", out, "--max-steps", steps, "--overwrite", "-q")
            done = summary(out)
            label = f"{name} {minutes:g} min" + (" (from the base)" if name == "continued" else " (base's tokenizer)")
            rows.append(score(label, out, args, test, labelled, work, done["steps"], done["elapsed_s"] / 60))
        print(table(rows), flush=True)
    print(f"\nheld-out: the first {args.test_rows:,} AG News test texts; classifier: {args.labelled or 'all'} labelled "
          f"train rows, {args.epochs} epochs, scored on the same test rows", flush=True)


if __name__ == "__main__":
    main()

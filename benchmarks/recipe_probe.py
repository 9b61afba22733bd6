"""The pretraining-recipe probe behind the defaults: pretrain each variant for a fixed number of steps (the CPU
budget's count), fine-tune, and print validation accuracy on splits of train only (the test files are not read).

    python benchmarks/recipe_probe.py --device cuda --workers 12          # ~8 minutes on one H100, 42 runs
    python benchmarks/recipe_probe.py --datasets trec --variants bert,default --steps 300 --device cpu

Variants are changes to the library's recipe made in this script (the library has no switch for them):
`bert` is BERT's (15% masked, dropout 0.1, decoder bias 0), `default` tinylm's (30%, no dropout, unigram bias).
SST-2's validation is sentence-level, built from train: maximal phrases (inside no longer phrase), 700 held out,
and every training phrase that is a piece of a held-out sentence removed.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "datasets"
FINETUNE_EPOCHS = {"agnews": 3, "trec": 15, "sst2": 1}
BERT = {"train": {"mlm_probability": 0.15}, "dropout": 0.1, "prior": False}
VARIANTS = {
    "random": {"random": True},
    "bert": BERT,
    "mask30": {**BERT, "train": {"mlm_probability": 0.3}},
    "mask40": {**BERT, "train": {"mlm_probability": 0.4}},
    "no_dropout": {**BERT, "dropout": 0.0},
    "prior": {**BERT, "prior": True},
    "no_dropout_prior": {**BERT, "dropout": 0.0, "prior": True},
    "default": {},
    "default_mask40": {"train": {"mlm_probability": 0.4}},
    "lr2e-3": {**BERT, "train": {"mlm_probability": 0.15, "lr": 2e-3}},
    "pre_ln": {**BERT, "pre_ln": True},
    "pre_ln_lr3e-3": {**BERT, "pre_ln": True, "train": {"mlm_probability": 0.15, "lr": 3e-3}},
    "vocab4000": {**BERT, "vocab": 4000},
}


def sst2_sentence_split(source: Path, folder: Path, n_val: int = 700) -> tuple[Path, Path]:
    with open(source, newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: -len(r["text"]))
    maximal, seen = [], ""
    for row in rows:  # longest first: a phrase inside an earlier one is not a sentence
        padded = f" {row['text'].strip()} "
        if padded not in seen:
            maximal.append(row)
            seen += "\n" + padded
    held = random.Random(0).sample(maximal, n_val)
    held_text = "\n".join(f" {r['text'].strip()} " for r in held)
    train = [r for r in rows if f" {r['text'].strip()} " not in held_text]
    paths = folder / "sst2_train.csv", folder / "sst2_val.csv"
    for path, part in zip(paths, (train, held)):
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["text", "label"])
            writer.writeheader()
            writer.writerows({"text": r["text"], "label": r["label"]} for r in part)
    return paths


def prepare(datasets: list[str], work: Path) -> dict:
    from tinylm.data import read_texts
    from tinylm.tokenizer import save_tokenizer, train_tokenizer

    splits = {}
    for name in datasets:
        if name == "sst2":
            splits[name] = sst2_sentence_split(SHARED / "sst2" / "train.csv", work)
        else:
            splits[name] = (SHARED / name / "train.csv", None)
        for vocab in {8000, *(v.get("vocab", 8000) for v in VARIANTS.values())}:
            folder = work / f"tok-{name}-{vocab}"
            if not (folder / "tokenizer.json").is_file():
                folder.mkdir(parents=True, exist_ok=True)
                save_tokenizer(train_tokenizer(read_texts(splits[name][0]), vocab_size=vocab), folder)
    return {k: [str(p) if p else None for p in v] for k, v in splits.items()}


def use_pre_ln():
    """x + Attn(LN(x)), x + FFN(LN(x)), a final LN (Xiong et al., 2020), by patching the library's blocks."""
    import torch.nn as nn
    from tinylm import model as M

    def block(self, x, attention_mask=None):
        a = self.attention
        x = x + a.output.dropout(a.output.dense(a.self(a.output.LayerNorm(x), attention_mask)))
        return x + self.output.dropout(self.output.dense(self.intermediate(self.output.LayerNorm(x))))

    encoder_init = M.BertEncoder.__init__

    def init(self, config):
        encoder_init(self, config)
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def encode(self, hidden_states, attention_mask=None):
        for layer in self.layer:
            hidden_states = layer(hidden_states, attention_mask)
        return self.final_norm(hidden_states)

    M.BertLayer.forward, M.BertEncoder.__init__, M.BertEncoder.forward = block, init, encode


def run_one(dataset: str, variant: str, splits: dict, args) -> dict:
    import torch
    from tinylm import pretrain as P
    from tinylm.config import PRESETS, FinetuneConfig, RunOptions
    from tinylm.finetune import finetune

    spec = VARIANTS[variant]
    train_csv, val_csv = (Path(p) if p else None for p in splits[dataset])
    tokenizer = args.work / f"tok-{dataset}-{spec.get('vocab', 8000)}"
    folder = args.work / f"{dataset}-{variant}"
    run = RunOptions(device=args.device, precision="fp32", quiet=True, overwrite=True, save_minutes=None,
                     cache_dir=folder / "cache")
    if spec.get("pre_ln"):
        use_pre_ln()
    if not spec.get("prior", True):
        P.unigram_log_prior = lambda tokens, vocab_size, never_predicted: torch.zeros(vocab_size)
    dropout = spec.get("dropout", 0.0)
    model = dataclasses.replace(PRESETS["mini"].model, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    cfg = dataclasses.replace(PRESETS["mini"].pretrain, max_steps=1 if spec.get("random") else args.steps,
                              **spec.get("train", {}))
    P.pretrain([train_csv], tokenizer, folder / "base", model, cfg, run)
    base = folder / "base"
    if spec.get("random"):
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from quality import random_base
        random_base(base, folder / "random")
        base = folder / "random"
    finetune(train_csv, base, folder / "clf", FinetuneConfig(epochs=FINETUNE_EPOCHS[dataset]), val_path=val_csv,
             run=dataclasses.replace(run, cache_dir=None))
    validated = [json.loads(x) for x in open(folder / "clf" / "metrics.jsonl") if "val_accuracy" in x]
    losses = [json.loads(x)["loss"] for x in open(folder / "base" / "metrics.jsonl") if '"loss"' in x][-10:]
    return {"dataset": dataset, "variant": variant, "steps": args.steps,
            "mlm_loss": None if spec.get("random") else sum(losses) / len(losses),
            "val_accuracy": max(r["val_accuracy"] for r in validated),
            "per_epoch": [round(r["val_accuracy"], 4) for r in validated]}


def pool(commands: list[list[str]], workers: int, log: Path | None = None) -> list[dict]:
    """Run the commands, `workers` at a time (one thread each when several), and gather the JSON lines they print."""
    env = {**os.environ, "OMP_NUM_THREADS": "1" if workers > 1 else os.environ.get("OMP_NUM_THREADS", "2")}
    results, running = [], []
    while commands or running:
        while commands and len(running) < workers:
            cmd = commands.pop(0)
            running.append((cmd, subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE)))
        time.sleep(0.5)
        for cmd, proc in [r for r in running if r[1].poll() is not None]:
            running.remove((cmd, proc))
            out, err = proc.communicate()
            if proc.returncode:
                print(f"{' '.join(cmd[2:])} failed: {err.strip().splitlines()[-3:]}", flush=True)
                continue
            for line in out.strip().splitlines():
                if line.startswith("{"):
                    results.append(emit(json.loads(line), log))
    return results


def emit(record: dict, log: Path | None) -> dict:
    """Print a run's record, and append it to the log file as soon as it is known (a cut-off probe keeps it)."""
    print(json.dumps(record), flush=True)
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(record) + "\n")
    return record


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default="agnews,trec,sst2")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--device", default="cuda")
    p.add_argument("--workers", type=int, default=1, help="runs at once (processes; one GPU takes ~12)")
    p.add_argument("--work", type=Path, default=Path("runs/recipe_probe"))
    p.add_argument("--json", type=Path, help="append one line per run here")
    p.add_argument("--one", help=argparse.SUPPRESS)  # DATASET:VARIANT, in a child process
    args = p.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.one:
        dataset, variant = args.one.split(":")
        splits = json.loads((args.work / "splits.json").read_text())
        emit(run_one(dataset, variant, splits, args), args.json)
        return
    datasets, variants = args.datasets.split(","), args.variants.split(",")
    (args.work / "splits.json").write_text(json.dumps(prepare(datasets, args.work)))
    jobs = [[sys.executable, __file__, "--one", f"{d}:{v}", "--steps", str(args.steps), "--device", args.device,
             "--work", str(args.work)] + (["--json", str(args.json)] if args.json else [])
            for v in variants for d in datasets]
    results = pool(jobs, args.workers)  # each child logs its own record
    print(f"\nvalidation accuracy (final MLM loss), {args.steps} pretraining steps of `mini`, fp32 on {args.device}")
    print(f"{'variant':18s}" + "".join(f"{d:>18s}" for d in datasets) + "     mean")
    for variant in variants:
        row = [r for d in datasets for r in results if r["dataset"] == d and r["variant"] == variant]
        if len(row) == len(datasets):
            cells = "".join(f"{r['val_accuracy']:>10.4f} ({r['mlm_loss'] or 0:5.2f})" for r in row)
            print(f"{variant:18s}{cells}   {sum(r['val_accuracy'] for r in row) / len(row):.4f}")


if __name__ == "__main__":
    main()

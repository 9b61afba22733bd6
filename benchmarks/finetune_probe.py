"""The fine-tuning probe: one default base per data set (pretrained for the CPU budget's step count), then each
fine-tuning variant from it, scored on validation splits of train that pretraining never saw (the test files are
not read). Variants starting with pt_ pretrain a base of their own first. Prints the best validation accuracy.

    python benchmarks/finetune_probe.py prepare --work runs/ft_probe      # splits and tokenizers (CPU, seconds)
    python benchmarks/finetune_probe.py run --work runs/ft_probe --device cuda --workers 14   # ~7 min, one H200
    python benchmarks/finetune_probe.py run --work runs/ft_probe --device cuda --workers 15 --skip-base \
        --seeds 0,1 --variants pt_default,pt_dropout0.1,pt_mask15,pt_random_emb,pt_bert

Variants marked (patch) are made in this script (the library has no switch for them). SST-2 is validated every
quarter epoch (--val-every), the others at every epoch's end. `prepare` needs ../shared; `run` only the folder it
wrote, so that the folder can travel to a GPU machine alone.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from quality import write_csv  # noqa: E402
from recipe_probe import emit, pool  # noqa: E402
SHARED = ROOT.parent / "shared" / "datasets"
PRETRAIN_STEPS = {"sst2": 2230, "trec": 2832, "agnews": 2174}  # what 15 CPU minutes gave in the quality benchmark
EPOCHS = {"sst2": 2, "trec": 20, "agnews": 6}  # about what 5 CPU minutes fit at batch 32
VARIANTS = {
    "default": {},
    "seed1": {"cfg": {"seed": 1}},
    "random": {"random": True},
    "lr2e-4": {"cfg": {"lr": 2e-4}},
    "lr1e-3": {"cfg": {"lr": 1e-3}},
    "dropout0.3": {"cfg": {"dropout": 0.3}},
    "wd0.1": {"cfg": {"weight_decay": 0.1}},
    "ema0": {"cfg": {"ema_decay": 0.0}},
    "bs128_lr1e-3": {"cfg": {"batch_size": 128, "lr": 1e-3}, "epochs": 1.6},  # 1.6x the documents/s on the CPU
    "smooth0.1": {"label_smoothing": 0.1},  # (patch)
    "llrd0.7": {"layer_decay": 0.7},  # (patch)
    "freeze_emb": {"freeze_embeddings": True},  # (patch)
    "tokdrop0.1": {"token_dropout": 0.1},  # (patch)
    "mean": {"cfg": {"pooling": "mean"}},
    "cls": {"cfg": {"pooling": "cls"}},
    "epochs_x2": {"epochs": 2.0},
    # Pretraining variants: each pretrains its own base (same step count), then fine-tunes it with the defaults.
    "pt_default": {"pretrain": {}},
    "pt_dropout0.1": {"pretrain": {}, "model": {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}},
    "pt_mask15": {"pretrain": {"mlm_probability": 0.15}},
    "pt_random_emb": {"pretrain": {"embedding_init": "random"}},
    "pt_bert": {"pretrain": {"mlm_probability": 0.15},
                "model": {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}},
}


def prepare(work: Path, datasets: list[str]):
    from recipe_probe import sst2_sentence_split
    from tinylm.data import read_texts
    from tinylm.finetune import stratified_split
    from tinylm.tokenizer import save_tokenizer, train_tokenizer

    splits = {}
    for name in datasets:
        if name == "sst2":
            train, val = sst2_sentence_split(SHARED / "sst2" / "train.csv", work)
        else:  # 10% of each class held out of pretraining and fine-tuning alike
            with open(SHARED / name / "train.csv", newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            train_idx, val_idx = stratified_split([r["label"] for r in rows], 0.1, 0)
            train, val = work / f"{name}_train.csv", work / f"{name}_val.csv"
            write_csv(train, [rows[i] for i in train_idx])
            write_csv(val, [rows[i] for i in val_idx])
        folder = work / f"tok-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        save_tokenizer(train_tokenizer(read_texts(train), vocab_size=8000), folder)
        splits[name] = [train.name, val.name]
    (work / "splits.json").write_text(json.dumps(splits))


def patch(spec: dict, tokenizer_dir: Path):
    """The variants the library has no switch for."""
    import torch
    import torch.nn.functional as F
    from tinylm import finetune as FT, model as M, train as T

    if spec.get("label_smoothing"):
        class Smoothed:
            def __getattr__(self, name):
                return getattr(F, name)
        Smoothed.cross_entropy = staticmethod(partial(F.cross_entropy, label_smoothing=spec["label_smoothing"]))
        M.F = Smoothed()
    make_optimizer = T.make_optimizer
    if spec.get("layer_decay") or spec.get("freeze_embeddings"):
        def optimizer(model, lr, weight_decay):
            if spec.get("freeze_embeddings"):
                model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
            if not spec.get("layer_decay"):
                return make_optimizer(model, lr, weight_decay)
            n = model.config.num_hidden_layers
            groups = {}
            for name, p in model.named_parameters():
                depth = (0 if ".embeddings." in f".{name}" else
                         int(name.split("encoder.layer.")[1].split(".")[0]) + 1 if "encoder.layer." in name else n + 1)
                key = (depth, p.ndim < 2)
                groups.setdefault(key, []).append(p)
            return torch.optim.AdamW(
                [{"params": ps, "lr": lr * spec["layer_decay"] ** (n + 1 - d), "weight_decay": 0.0 if nd else weight_decay}
                 for (d, nd), ps in groups.items()], lr=lr, betas=(0.9, 0.999), eps=1e-6)
        T.make_optimizer = optimizer
    if spec.get("token_dropout"):
        from tinylm.tokenizer import load_tokenizer
        tok = load_tokenizer(tokenizer_dir)
        mask_id = tok.token_to_id("[MASK]")
        specials = torch.tensor([tok.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")])
        micro_batch = FT.ClassificationBatches.micro_batch

        def dropped(self, *args):
            batch = micro_batch(self, *args)
            ids = batch.inputs["input_ids"]
            g = torch.Generator().manual_seed(batch.seed)
            drop = (torch.rand(ids.shape, generator=g) < spec["token_dropout"]) & ~torch.isin(ids, specials)
            batch.inputs["input_ids"] = ids.masked_fill(drop, mask_id)
            return batch
        FT.ClassificationBatches.micro_batch = dropped


def run_base(dataset: str, work: Path, device: str, spec: dict | None = None, name: str = "base"):
    from tinylm import pretrain as P
    from tinylm.config import PRESETS, RunOptions

    spec = spec or {}
    train = work / json.loads((work / "splits.json").read_text())[dataset][0]
    folder = work / f"{name}-{dataset}"
    run = RunOptions(device=device, precision="fp32", quiet=True, overwrite=True, save_minutes=None,
                     cache_dir=work / f"cache-{name}-{dataset}")
    cfg = dataclasses.replace(PRESETS["mini"].pretrain, max_steps=PRETRAIN_STEPS[dataset], **spec.get("pretrain", {}))
    model = dataclasses.replace(PRESETS["mini"].model, **spec.get("model", {}))
    P.pretrain([train], work / f"tok-{dataset}", folder, model, cfg, run)
    if name == "base":
        from quality import random_base
        random_base(folder, work / f"random-{dataset}")
    losses = [json.loads(x) for x in open(folder / "metrics.jsonl")]
    return {"dataset": dataset, "variant": name, "mlm_loss": [r["loss"] for r in losses if "loss" in r][-1],
            "held_out": [r["val_loss"] for r in losses if "val_loss" in r][-1:]}


def run_one(dataset: str, variant: str, work: Path, device: str, seed: int = 0) -> dict:
    from tinylm import finetune as FT
    from tinylm.config import FinetuneConfig, RunOptions

    spec = VARIANTS[variant]
    pretrained = None
    if "pretrain" in spec and not (work / f"{variant}-{dataset}" / "model.safetensors").is_file():
        pretrained = run_base(dataset, work, device, spec, variant)
    patch(spec, work / f"tok-{dataset}")
    train, val = (work / p for p in json.loads((work / "splits.json").read_text())[dataset])
    epochs = max(1, round(EPOCHS[dataset] * spec.get("epochs", 1)))
    cfg = FinetuneConfig(epochs=epochs, **{"seed": seed, **spec.get("cfg", {})})
    if dataset == "sst2":  # a quarter of an epoch
        with open(train, newline="", encoding="utf-8") as f:
            cfg.val_every = max(1, math.ceil((sum(1 for _ in f) - 1) / cfg.batch_size) // 4)
    base = work / f"{'random' if spec.get('random') else variant if 'pretrain' in spec else 'base'}-{dataset}"
    out = work / f"clf-{dataset}-{variant}-{seed}"
    started = time.perf_counter()
    FT.finetune(train, base, out, cfg, val_path=val,
                run=RunOptions(device=device, precision="fp32", quiet=True, overwrite=True, save_minutes=None))
    validated = [json.loads(x) for x in open(out / "metrics.jsonl") if "val_accuracy" in x]
    best = max(validated, key=lambda r: r["val_accuracy"])
    ends = [r["val_accuracy"] for r in validated if "epoch_fraction" not in r]
    return {"dataset": dataset, "variant": variant, "seed": seed, "pretrained": pretrained,
            "val_accuracy": best["val_accuracy"],
            "best_at": round(best["epoch"] - 1 + best.get("epoch_fraction", 1.0), 2),
            "best_epoch_end": max(ends) if ends else None, "last": validated[-1]["val_accuracy"],
            "curve": [round(r["val_accuracy"], 4) for r in validated], "seconds": round(time.perf_counter() - started)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["prepare", "run", "base", "one"])
    p.add_argument("--datasets", default="sst2,agnews,trec")
    p.add_argument("--variants", default=",".join(v for v in VARIANTS if not v.startswith("pt_")))
    p.add_argument("--device", default="cuda")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("runs/ft_probe"))
    p.add_argument("--json", type=Path, help="append one line per run here")
    p.add_argument("--seeds", default="0", help="fine-tuning seeds, each a run from the same base")
    p.add_argument("--skip-base", action="store_true", help="only the variants that pretrain their own base")
    p.add_argument("--job", help=argparse.SUPPRESS)
    p.add_argument("--smoke", action="store_true", help="5 pretraining steps and 1 epoch each: checks the script")
    args = p.parse_args()
    if args.smoke:
        PRETRAIN_STEPS.update(dict.fromkeys(PRETRAIN_STEPS, 5))
        EPOCHS.update(dict.fromkeys(EPOCHS, 1))
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.action == "prepare":
        return prepare(work, args.datasets.split(","))
    if args.action == "base":
        return print(json.dumps(run_base(args.job, work, args.device)), flush=True)
    if args.action == "one":  # each seed's record goes to --json as soon as it is known
        dataset, variant = args.job.split(":")
        for seed in map(int, args.seeds.split(",")):
            emit(run_one(dataset, variant, work, args.device, seed), args.json)
        return
    datasets, variants = args.datasets.split(","), args.variants.split(",")
    me = [sys.executable, __file__]
    common = ["--work", str(work), "--device", args.device] + (["--smoke"] if args.smoke else [])
    if not args.skip_base:
        pool([[*me, "base", "--job", d, *common] for d in datasets], args.workers, args.json)
    logged = ["--json", str(args.json)] if args.json else []  # each fine-tuning run's line, as soon as it is known
    results = pool([[*me, "one", "--job", f"{d}:{v}", "--seeds", args.seeds, *common, *logged]
                    for v in variants for d in datasets], args.workers)
    print(f"\nbest validation accuracy (mean over fine-tuning seeds {args.seeds}), on {args.device}")
    print(f"{'variant':14s}" + "".join(f"{d:>10s}" for d in datasets) + "      mean")
    for variant in variants:
        row = [[r["val_accuracy"] for r in results if r["dataset"] == d and r["variant"] == variant] for d in datasets]
        if all(row):
            means = [sum(x) / len(x) for x in row]
            print(f"{variant:14s}" + "".join(f"{m:>10.4f}" for m in means) + f"    {sum(means) / len(means):.4f}")


if __name__ == "__main__":
    main()

"""Serving a classifier three ways, side by side in one run: tinylm (PyTorch), its ONNX export (fp32 and int8,
ONNX Runtime) and its transformers export. Parity, documents/s and what int8 costs in accuracy.

    python benchmarks/deploy.py                                    # AG News: trains the classifiers first (~20 min)
    python benchmarks/deploy.py --work runs/deploy-bench           # reuse the classifiers of an earlier run
    python benchmarks/deploy.py --pretrain-minutes 1 --finetune-minutes 1 --n-docs 200 --accuracy-docs 400  # smoke

The classifiers are made with the CLI as a user makes them, on ../shared/datasets/agnews: `tokenize` and
`pretrain --preset small` on the train texts, then `finetune` once per pooling (max, the default; mean; cls) and
once with `--long-docs windows` (seq_len 64, so that most documents span several windows). Each is exported with
`tinylm export --format hf` and `--format onnx` (and `--int8`).

Parity (fp32): max |probability difference| against tinylm's own prediction path (evaluate.load_classifier) on the
first --n-docs test texts, in padded batches of mixed lengths, and whether every predicted label agrees.
Speed: documents/s of each path on the same texts, batch --batch-size, the best of --repeats runs taking turns
(so that load from another process does not fall on one side only). Tokenization is included everywhere.
int8: test accuracy of the ONNX fp32 and int8 exports of the max-pooled classifier on --accuracy-docs test rows.
Ceilings (in the speed table): ONNX Runtime running nothing but the classifier's linear layers, fp32 and int8, on
inputs of the very batch shapes `tinylm predict` forms (no tokenizer, attention, LayerNorm or GELU). No path that
runs the same GEMMs through ONNX Runtime can be faster than that.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import transformers

from predict_speed import best_times, hf_predict, read_rows
from tinylm.data import encode_for_classification
from tinylm.devices import cpu_has_native_bf16, cpu_name
from tinylm.checkpoint import load_checkpoint
from tinylm.evaluate import checkpoint_long_docs, checkpoint_seq_len, load_classifier
from tinylm.onnx_export import quantize_int8

ROOT = Path(__file__).resolve().parent.parent
AGNEWS = ROOT.parent / "shared" / "datasets" / "agnews"
CEILINGS = ("ONNX Runtime linear layers only, fp32", "ONNX Runtime linear layers only, int8")
VARIANTS = {"max": [], "mean": ["--pooling", "mean"], "cls": ["--pooling", "cls"],
            "windows": ["--long-docs", "windows", "--seq-len", "64"]}


def tinylm(*args):
    done = subprocess.run([sys.executable, "-m", "tinylm", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"tinylm {' '.join(map(str, args))} failed: {done.stderr.strip().splitlines()[-1:]}")


def make_classifiers(work: Path, args):
    """Tokenizer, base and one classifier per variant, each exported three ways; skips what already exists."""
    train = AGNEWS / "train.csv"
    steps = [("tok", ["tokenize", train, "--out", work / "tok", "--vocab-size", 8000]),
             ("base", ["pretrain", train, "--tokenizer", work / "tok", "--out", work / "base", "--preset", "small",
                       "--max-minutes", args.pretrain_minutes, "--quiet"])]
    for name, extra in VARIANTS.items():
        steps += [(name, ["finetune", train, "--base", work / "base", "--out", work / name, "--max-minutes",
                          args.finetune_minutes, "--quiet", *extra]),
                  (f"{name}-hf", ["export", work / name, work / f"{name}-hf"]),
                  (f"{name}-onnx", ["export", work / name, work / f"{name}-onnx", "--format", "onnx"]),
                  (f"{name}-int8", ["export", work / name, work / f"{name}-int8", "--format", "onnx", "--int8"])]
    for folder, command in steps:
        if not (work / folder).is_dir():
            print(f"tinylm {command[0]} -> {work / folder}", flush=True)
            tinylm(*command)


def transformers_path(folder: Path, seq_len: int, batch_size: int):
    """What a transformers user runs on the export: AutoModel (remote code where the folder has it), the tokenizer,
    batches in input order padded to their longest, softmax."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, local_files_only=True, trust_remote_code=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=True)
    run = partial(hf_predict, model, tokenizer, seq_len=seq_len, batch_size=batch_size)
    return lambda texts: run(texts).numpy()


def hf_max_length(folder: Path) -> int:
    return transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True,
                                                      trust_remote_code=True).model_max_length


def compare(reference: np.ndarray, other: np.ndarray) -> str:
    diff = np.abs(reference - other).max()
    agree = (reference.argmax(-1) == other.argmax(-1)).mean()
    return f"{diff:.1e} {'same labels' if agree == 1 else f'labels agree on {agree:.2%}'}"


def parity(work: Path, texts: list[str], batch_size: int):
    print(f"\nparity, fp32, {len(texts):,} AG News test texts, batches of {batch_size}: max |probability difference| "
          "against tinylm (PyTorch)")
    print(f"{'classifier':24} {'transformers export':32} {'ONNX Runtime export':32}")
    for name in VARIANTS:
        ours = load_classifier(work / name, "cpu", "fp32").probabilities(texts, batch_size)
        onnx = load_classifier(work / f"{name}-onnx").probabilities(texts, batch_size)
        if name == "windows":  # transformers reads one window; the windows are served by `tinylm predict`
            theirs = "n/a (reads the first window)"
        else:
            seq_len = hf_max_length(work / f"{name}-hf")
            theirs = compare(ours, transformers_path(work / f"{name}-hf", seq_len, batch_size)(texts))
        print(f"{name:24} {theirs:32} {compare(ours, onnx):32}", flush=True)


def speed(work: Path, texts: list[str], batch_size: int, repeats: int):
    name = "max"
    seq_len = hf_max_length(work / f"{name}-hf")
    sides = {"tinylm (PyTorch) fp32": load_classifier(work / name, "cpu", "fp32").probabilities}
    if cpu_has_native_bf16():
        sides["tinylm (PyTorch) bf16"] = load_classifier(work / name, "cpu", "bf16").probabilities
    sides["ONNX Runtime fp32"] = load_classifier(work / f"{name}-onnx").probabilities
    sides["ONNX Runtime int8"] = load_classifier(work / f"{name}-int8").probabilities
    hf = transformers_path(work / f"{name}-hf", seq_len, batch_size)
    runs = {side: partial(run, texts, batch_size) for side, run in sides.items()}
    runs["transformers (remote code) fp32"] = partial(hf, texts)
    for int8, side in enumerate(CEILINGS):
        runs[side] = linear_layers_only(work / name, texts, batch_size, work / f"linear-layers-{side[-4:]}.onnx", int8)
    for side, run in sides.items():  # warm-up: allocators, kernels, the tokenizer
        run(texts[:batch_size], batch_size)
    hf(texts[:batch_size])
    for side in CEILINGS:
        runs[side]()
    results = best_times(runs, repeats)
    reference = results["tinylm (PyTorch) fp32"][0]
    print(f"\nspeed: {len(texts):,} AG News test texts, max-pooled `small` classifier (seq_len {seq_len}), batch "
          f"{batch_size}, best of {repeats}; {torch.get_num_threads()} threads, {cpu_name()}")
    print(f"{'path':40} {'docs/s':>8} {'vs tinylm fp32':>15}")
    for side, (seconds, _) in results.items():
        print(f"{side:40} {len(texts) / seconds:8.1f} {reference / seconds:14.2f}x")
    print("(linear layers only: nothing but the encoder's linear layers in ONNX Runtime, on the same batch shapes; no "
          "tokenizer, attention, LayerNorm or GELU: a ceiling for a runtime that runs the same GEMMs)")


class LinearLayers(torch.nn.Module):
    """The encoder's linear layers alone, chained as the encoder runs them (the query stands in for the attention
    context; key and value are outputs, so that they are computed)."""

    def __init__(self, model):
        super().__init__()
        self.layers = model.bert.encoder.layer

    def forward(self, x):
        outputs = []
        for layer in self.layers:
            attention = layer.attention
            outputs += [attention.self.key(x), attention.self.value(x)]
            x = attention.output.dense(attention.self.query(x))
            x = layer.output.dense(layer.intermediate.dense(x))
        return x, *outputs


def linear_layers_only(folder: Path, texts: list[str], batch_size: int, out: Path, int8: bool = False):
    """A run over `texts` of the ONNX Runtime session that holds nothing but the linear layers (see the docstring),
    on random inputs of the shapes tinylm's batches take: sorted by length, padded to their longest. int8: the
    layers quantised as `--int8` quantises them."""
    import onnxruntime

    model, tokenizer, _ = load_checkpoint(folder, expect_kind="classifier")
    hidden = model.config.hidden_size
    sequences, _ = encode_for_classification(tokenizer, texts, checkpoint_seq_len(folder, model),
                                             checkpoint_long_docs(folder))
    lengths = sorted(map(len, sequences))
    shapes = [(len(chunk), chunk[-1]) for chunk in (lengths[i:i + batch_size] for i in range(0, len(lengths), batch_size))]
    graph = LinearLayers(model).eval()
    with torch.no_grad():
        torch.onnx.export(graph, (torch.zeros(2, 8, hidden),), str(out), input_names=["x"],
                          dynamic_axes={"x": {0: "batch", 1: "sequence"}}, opset_version=17, dynamo=False)
    if int8:
        quantize_int8(out)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((b, t, hidden), dtype=np.float32) for b, t in shapes]
    return lambda: [session.run(None, {"x": x}) for x in inputs]


def int8_accuracy(work: Path, texts: list[str], labels: list[str], batch_size: int):
    print(f"\naccuracy on {len(texts):,} AG News test rows, max-pooled classifier:")
    for side, folder, precision in (("tinylm (PyTorch) fp32", work / "max", "fp32"),
                                    ("ONNX Runtime fp32", work / "max-onnx", "fp32"),
                                    ("ONNX Runtime int8", work / "max-int8", "fp32")):
        classifier = load_classifier(folder, "cpu", precision)
        start = time.perf_counter()
        predicted = classifier.probabilities(texts, batch_size).argmax(-1)
        seconds = time.perf_counter() - start
        accuracy = np.mean([classifier.scheme.labels[p] == label for p, label in zip(predicted, labels)])
        print(f"{side:34} accuracy {accuracy:.4f}  ({len(texts) / seconds:.0f} docs/s)", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "deploy-bench")
    parser.add_argument("--pretrain-minutes", type=float, default=10)
    parser.add_argument("--finetune-minutes", type=float, default=2)
    parser.add_argument("--n-docs", type=int, default=2000, help="texts for parity and speed")
    parser.add_argument("--accuracy-docs", type=int, default=0, help="test rows for the int8 accuracy (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", default="parity,speed,accuracy", help="which of parity, speed, accuracy to run")
    args = parser.parse_args()
    if not AGNEWS.is_dir():
        sys.exit(f"{AGNEWS} is missing: this benchmark reads AG News from ../shared/datasets")
    args.work.mkdir(parents=True, exist_ok=True)
    make_classifiers(args.work, args)
    texts, labels = read_rows(AGNEWS / "test.csv", 0)
    parts = args.parts.split(",")
    if "parity" in parts:
        parity(args.work, texts[:args.n_docs], args.batch_size)
    if "speed" in parts:
        speed(args.work, texts[:args.n_docs], args.batch_size, args.repeats)
    if "accuracy" in parts:
        n = args.accuracy_docs or len(texts)
        int8_accuracy(args.work, texts[:n], labels[:n], args.batch_size)


if __name__ == "__main__":
    main()

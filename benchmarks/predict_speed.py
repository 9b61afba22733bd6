"""Inference throughput (documents/s) of tinylm's prediction path against transformers', same weights, same texts.

    python benchmarks/predict_speed.py                     # AG News test texts from ../shared/datasets, else data/test.csv
    python benchmarks/predict_speed.py --data FILE.csv --n-docs 0   # every row of another file

tinylm: evaluate.predict_proba (tokenize with the Rust tokenizer, sort by length, batches padded to their longest).
transformers: BertForSequenceClassification with SDPA attention under torch.inference_mode, the texts in input
order in batches of the same size, each tokenized and padded to its longest document, as a typical user does.
A third row, transformers fed tinylm's length-sorted batches, tells the model's speed apart from the batching's.
Both models are the `small` preset (4 layers, hidden 256) with BERT's [CLS] pooler and the same random weights
(the head spread so that the predicted classes vary, see spread_head), behind one WordPiece tokenizer trained on
the benchmark texts; the predictions of the two are compared.
"""

from __future__ import annotations

import argparse
import csv
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch
import transformers
from tokenizers import Tokenizer

from tinylm.config import PRESETS
from tinylm.data import encode_documents
from tinylm.evaluate import predict_proba
from tinylm.model import BertForSequenceClassification
from tinylm.tokenizer import PAD, train_tokenizer
from tinylm.devices import cpu_has_native_bf16, cpu_name

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = [ROOT.parent / "shared" / "datasets" / "agnews" / "test.csv", ROOT / "data" / "test.csv"]
SPECIALS = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def read_rows(path: Path, n_docs: int) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = rows[:n_docs] if n_docs else rows
    return [row["text"] for row in rows], [row["label"] for row in rows]


def spread_head(model, tokenizer, texts: list[str], seq_len: int):
    """The [CLS] states of a random encoder differ little between documents, so a random head gives every one the
    same class and the argmax comparison would be vacuous. Widen the head and centre its logits on (some of) these
    texts, so that the predictions spread over the classes. Speed does not depend on the weights."""
    torch.nn.init.normal_(model.classifier.weight, std=1.0)
    log_probs = predict_proba(model, tokenizer, texts[:256], seq_len).log()  # logits up to a per-document constant
    with torch.no_grad():
        model.classifier.bias -= log_probs.mean(dim=0)


def hf_predict(model, tokenizer, texts: list[str], seq_len: int, batch_size: int,
               order: list[int] | None = None) -> torch.Tensor:
    """What a transformers user writes: tokenize a batch, pad it to its longest, run the model, softmax."""
    order = list(range(len(texts))) if order is None else order
    probs = torch.empty(len(texts), model.config.num_labels)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in chunk], padding=True, truncation=True, max_length=seq_len,
                          return_tensors="pt")
        with torch.inference_mode():
            probs[chunk] = torch.softmax(model(**batch).logits.float(), dim=-1)
    return probs


def best_times(runs: dict, repeats: int) -> dict[str, tuple[float, torch.Tensor]]:
    """The fastest of `repeats` timed runs per side, taking turns, so that a burst of load from another process
    on a shared machine does not fall on one side only."""
    results = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            probs = run()
            seconds = time.perf_counter() - start
            results[name] = (min(seconds, results.get(name, (seconds,))[0]), probs)
    return results


def computed_positions(lengths: list[int], order: list[int], batch_size: int) -> int:
    """Token positions the model runs over, padding included: each batch is as wide as its longest document."""
    return sum(len(chunk) * max(lengths[i] for i in chunk)
               for chunk in (order[s:s + batch_size] for s in range(0, len(order), batch_size)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="CSV with text,label columns (default: AG News test, else data/test.csv)")
    parser.add_argument("--n-docs", type=int, default=1000, help="first N rows (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side, taking turns; the best is reported")
    args = parser.parse_args()
    data = args.data or next(p for p in DEFAULT_DATA if p.is_file())
    texts, labels = read_rows(data, args.n_docs)
    num_labels = len(set(labels))

    tokenizer = train_tokenizer(texts, vocab_size=8000)
    config = replace(PRESETS["small"].model, vocab_size=tokenizer.get_vocab_size(), pad_token_id=tokenizer.token_to_id(PAD))
    torch.manual_seed(0)
    ours = BertForSequenceClassification(config, num_labels, pooling="cls").eval()
    spread_head(ours, tokenizer, texts, args.seq_len)
    theirs = transformers.BertForSequenceClassification(
        transformers.BertConfig(**asdict(config), num_labels=num_labels, attn_implementation="sdpa")).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    assert theirs.config._attn_implementation == "sdpa", theirs.config._attn_implementation
    # A copy of the very same tokenizer (training another would number the pieces differently).
    hf_tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tokenizer.to_str()), **SPECIALS)

    lengths = [len(ids) for ids in encode_documents(tokenizer, texts, args.seq_len)]
    input_order = list(range(len(texts)))
    sorted_order = sorted(input_order, key=lengths.__getitem__)
    precision = "bf16" if cpu_has_native_bf16() else "fp32"  # emulated bf16 on AVX2 would only measure the emulation
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    ours_run = partial(predict_proba, ours, tokenizer, seq_len=args.seq_len, batch_size=args.batch_size)
    theirs_run = partial(hf_predict, theirs, hf_tokenizer, seq_len=args.seq_len, batch_size=args.batch_size)
    sides = {  # name: (run, the order its batches are cut in)
        "tinylm predict_proba": (ours_run, sorted_order),
        "transformers, input order": (theirs_run, input_order),
        "transformers, tinylm's sorted batches": (partial(theirs_run, order=sorted_order), sorted_order),
    }
    with cast:
        ours_run(texts[:args.batch_size])  # warm-up: allocator, kernels, tokenizer
        theirs_run(texts[:args.batch_size])
        results = best_times({name: partial(run, texts) for name, (run, _) in sides.items()}, args.repeats)

    print(f"model: small preset, {config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} "
          f"heads, FFN {config.intermediate_size}, vocab {config.vocab_size}, {num_labels} labels, [CLS] pooler")
    print(f"data: {data} ({len(texts):,} docs, mean {sum(lengths) / len(lengths):.0f} tokens, max {max(lengths)}, "
          f"seq_len {args.seq_len}), batch {args.batch_size}, {precision}, {torch.get_num_threads()} threads, {cpu_name()}")
    reference = results["tinylm predict_proba"][0]
    print(f"\n{'':40} {'docs/s':>8} {'time / tinylm':>14} {'positions run (incl. padding)':>30}")
    for name, (seconds, _) in results.items():
        run_over = computed_positions(lengths, sides[name][1], args.batch_size)
        print(f"{name:40} {len(texts) / seconds:8.1f} {seconds / reference:13.2f}x "
              f"{run_over:>16,} ({run_over / sum(lengths) - 1:+.0%} padding)")
    ratio = results["transformers, input order"][0] / reference
    print(f"\ntinylm is {ratio:.2f}x the documents/s of transformers in input order")

    ours_probs, theirs_probs = results["tinylm predict_proba"][1], results["transformers, input order"][1]
    agree = (ours_probs.argmax(-1) == theirs_probs.argmax(-1)).float().mean().item()
    diff = (ours_probs - theirs_probs).abs().max().item()
    spread = torch.bincount(ours_probs.argmax(-1), minlength=num_labels).tolist()
    ok = agree >= 0.999 and diff < (1e-4 if precision == "fp32" else 2e-2)  # bf16 rounds differently per batch shape
    print(f"predictions: argmax agrees on {agree:.2%} of documents, max |prob diff| {diff:.1e}  "
          f"[{'OK' if ok else 'MISMATCH'}]; documents per predicted class {spread}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

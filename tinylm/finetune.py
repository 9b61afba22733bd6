"""Sequence classification: base checkpoint + labelled data -> classifier checkpoint (kind "classifier")."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from tinylm.checkpoint import load_checkpoint, save_checkpoint
from tinylm.config import FinetuneConfig, check_positive
from tinylm.data import Record, encode_documents, pad_batch, read_records
from tinylm.errors import TinyLMError
from tinylm.evaluate import classification_report, predict_proba
from tinylm.model import POOLINGS, BertForSequenceClassification
from tinylm.pii import scrub
from tinylm.pretrain import prepare_out_dir, resolve_scrub
from tinylm.provenance import build_manifest, file_records, now, parent_record, scrub_record
from tinylm.train import Batch, LoopConfig, console, resolve_device, resolve_precision, train


def stratified_split(labels: list[str], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): about `fraction` of every class, at least one, never a whole class."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(members)
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        val_idx += members[:n_val]
        train_idx += members[n_val:]
    return sorted(train_idx), sorted(val_idx)


def classification_batches(sequences: list[list[int]], targets: list[int], batch_size: int, seed: int,
                           pad_id: int) -> Iterator[Batch]:
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(sequences))
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            input_ids, attention_mask = pad_batch([sequences[i] for i in chunk], pad_id)
            labels = torch.tensor([targets[i] for i in chunk], dtype=torch.long)
            yield Batch({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels},
                        n_tokens=int(attention_mask.sum()), epoch_end=start + batch_size >= len(order))


def scrub_records(records: list[Record], kinds: tuple[str, ...]) -> dict[str, int]:
    """Scrub the records' text in place (the split is made first, so it does not depend on scrubbing)."""
    total = dict.fromkeys(kinds, 0)
    for record in records:
        record.text, counts = scrub(record.text, kinds)
        for kind, n in counts.items():
            total[kind] += n
    return total


def finetune(train_path: Path, base_dir: Path, out_dir: Path, cfg: FinetuneConfig, val_path: Path | None = None,
             precision: str = "auto", device: str = "auto", overwrite: bool = False, quiet: bool = False,
             encoding: str = "utf-8", command: str = "", scrub_kinds: tuple[str, ...] | None = None,
             record_host: bool = False) -> dict:
    """Fine-tune the base encoder with a classification head; keep the epoch with the best validation accuracy."""
    check_positive(cfg, ("epochs", "batch_size", "lr", "seq_len", "log_every"))
    if cfg.pooling not in POOLINGS:
        raise TinyLMError(f"--pooling must be one of {', '.join(POOLINGS)}, got {cfg.pooling!r}")
    if not 0 < cfg.val_fraction < 1:
        raise TinyLMError(f"--val-fraction must be in (0, 1), got {cfg.val_fraction}")
    started = now()
    base, tokenizer, _ = load_checkpoint(base_dir, expect_kind="mlm")
    scrub_kinds = resolve_scrub(scrub_kinds, base_dir, tokenizer)
    if cfg.seq_len is None:
        cfg.seq_len = min(256, base.config.max_position_embeddings)
    if cfg.seq_len > base.config.max_position_embeddings:
        raise TinyLMError(f"--seq-len {cfg.seq_len} exceeds the model's max_position_embeddings "
                          f"{base.config.max_position_embeddings}")
    records = [r for r in read_records(train_path, cfg.text_column, cfg.label_column, encoding=encoding) if r.text.strip()]
    labels = sorted({r.label for r in records})
    if len(labels) < 2:
        raise TinyLMError(f"{train_path} has only one label ({labels[0]!r}); a classifier needs at least two")
    label2id = {label: i for i, label in enumerate(labels)}
    if val_path is not None:
        val_records = read_records(val_path, cfg.text_column, cfg.label_column, encoding=encoding)
        unseen = sorted({r.label for r in val_records} - set(labels))
        if unseen:
            raise TinyLMError(f"--val {val_path} has label(s) {', '.join(map(repr, unseen))} that the training data lacks")
        train_records = records
    else:
        train_idx, val_idx = stratified_split([r.label for r in records], cfg.val_fraction, cfg.seed)
        train_records, val_records = [records[i] for i in train_idx], [records[i] for i in val_idx]
    inputs, hashing_s = file_records([train_path, *([val_path] if val_path else [])])
    for record, role in zip(inputs, ("train", "validation")):
        record["role"] = role  # the validation file picks the saved epoch but is never trained on
    scrub_counts = None
    if scrub_kinds:
        scrub_counts = scrub_records([*records, *(val_records if val_path else [])], scrub_kinds)
    log = prepare_out_dir(out_dir, overwrite)
    dev = resolve_device(device)
    resolved_precision = resolve_precision(precision, dev)

    torch.manual_seed(cfg.seed)
    model = BertForSequenceClassification(base.config, num_labels=len(labels), pooling=cfg.pooling)
    model.bert.load_state_dict(base.bert.state_dict(), strict=False)  # the pooler is new, as in BERT fine-tuning
    del base
    sequences = encode_documents(tokenizer, [r.text for r in train_records], cfg.seq_len)
    targets = [label2id[r.label] for r in train_records]
    steps_per_epoch = math.ceil(len(sequences) / cfg.batch_size)
    console.print(f"fine-tuning on {len(train_records):,} documents ({len(labels)} labels), validating on "
                  f"{len(val_records):,}; {cfg.epochs} epochs of {steps_per_epoch} steps, {resolved_precision} on {dev.type}")

    id2label = dict(enumerate(labels))
    args = {"stage": "finetune", "command": command, "train_data": str(train_path), "base": str(base_dir),
            "val_data": str(val_path) if val_path else None, "precision": resolved_precision, "train": asdict(cfg),
            "scrub_pii": list(scrub_kinds or [])}  # predict and eval read this and scrub their input the same way
    manifest = dict(kind="classifier", inputs=inputs, parents=[parent_record(base_dir, "base")],
                    config={**args, "labels": labels}, command=command, started=started, record_host=record_host,
                    scrub=scrub_record(scrub_kinds, scrub_counts), hashing_s=hashing_s)
    best = {"val_accuracy": -1.0}

    def on_epoch_end(epoch: int, step: int) -> dict:
        probs = predict_proba(model, tokenizer, [r.text for r in val_records], cfg.seq_len, device=dev)
        report = classification_report([label2id[r.label] for r in val_records], probs.argmax(-1).tolist(), labels)
        figures = {"val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]}
        improved = figures["val_accuracy"] > best["val_accuracy"]
        console.print(f"epoch {epoch}: val accuracy {figures['val_accuracy']:.4f}  macro-F1 "
                      f"{figures['val_macro_f1']:.4f}" + ("  [green]best, saved[/]" if improved else ""))
        if improved:
            best.update(figures, epoch=epoch, step=step)
            save_checkpoint(out_dir, model, tokenizer, {**args, "best": dict(best)}, id2label,
                            provenance=build_manifest(**manifest))
        return figures

    loop = LoopConfig(max_steps=cfg.epochs * steps_per_epoch, lr=cfg.lr, warmup_ratio=cfg.warmup_ratio,
                      weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip, log_every=cfg.log_every,
                      precision=resolved_precision, description="finetune", quiet=quiet)
    batches = classification_batches(sequences, targets, cfg.batch_size, cfg.seed, tokenizer.token_to_id("[PAD]"))
    summary = train(model, batches, loop, log, dev, on_epoch_end)
    return {**summary, "best": best}

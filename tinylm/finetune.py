"""Sequence classification: base checkpoint + labelled data -> classifier checkpoint (kind "classifier")."""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from tinylm.checkpoint import RUN_CONFIG, load_checkpoint, save_checkpoint
from tinylm.config import FinetuneConfig, RunOptions, check_positive, to_toml
from tinylm import distributed
from tinylm.data import LONG_DOCS, Record, encode_for_classification, pad_batch, read_records
from tinylm.distributed import Layout, World
from tinylm.errors import TinyLMError
from tinylm.evaluate import classification_report, predict_proba
from tinylm.model import POOLINGS, BertForSequenceClassification
from tinylm.pii import scrub
from tinylm.pretrain import batch_identity, describe_batch, loop_config, prepare_out_dir, resolve_scrub
from tinylm.provenance import build_manifest, file_records, now, parent_record, scrub_record
from tinylm.state import checkpoint_root
from tinylm.train import Batch, console, derived_seed, resolve_precision, train


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


class ClassificationBatches:
    """This process's micro-batches of step i, as a pure function of (seed, i): epoch i // steps_per_epoch,
    shuffled afresh each epoch, each micro-batch padded to its longest document. A resumed run jumps to its step;
    nothing is replayed.

    Global batches (batch_size x the layout's micro-batches) are grouped by length (as Hugging Face Trainer's
    group_by_length): the epoch's shuffled order is cut into groups of GROUP global batches, each group sorted by
    length and cut into global batches, and those shuffled. A batch then holds documents of similar length, so
    little of it is padding, while each batch is still a random draw of documents. A global batch is cut into
    micro-batches as evenly as it goes; where the epoch's last batch has fewer documents than micro-batches, a
    process that gets none computes a document with weight 0, so that every process takes part in the step.
    """

    GROUP = 50

    def __init__(self, sequences: list[list[int]], targets: list[int], batch_size: int, seed: int, pad_id: int,
                 class_weights: torch.Tensor | None = None, layout: Layout = Layout()):
        self.sequences, self.targets, self.batch_size, self.seed, self.pad_id = sequences, targets, batch_size, seed, pad_id
        self.class_weights, self.layout = class_weights, layout
        self.global_batch = batch_size * layout.micro_batches
        self.lengths = np.array([len(s) for s in sequences])
        self.steps_per_epoch = math.ceil(len(sequences) / self.global_batch)
        self._epoch: tuple[int, list[np.ndarray]] | None = None

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's global batches, each ordered longest first."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.sequences))
        group = self.GROUP * self.global_batch
        batches = []
        for start in range(0, len(order), group):
            members = order[start:start + group]
            members = members[np.argsort(-self.lengths[members], kind="stable")]
            batches += [members[i:i + self.global_batch] for i in range(0, len(members), self.global_batch)]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __call__(self, step: int) -> list[Batch]:
        epoch, position = divmod(step, self.steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self.epoch_batches(epoch))
        chunks = np.array_split(self._epoch[1][position], self.layout.micro_batches)
        return [self.micro_batch(step, chunk, chunks[chunk], epoch, position) for chunk in self.layout.chunks]

    def micro_batch(self, step: int, chunk: int, rows: np.ndarray, epoch: int, position: int) -> Batch:
        weight = 1.0 if len(rows) else 0.0  # an empty micro-batch: the first document, counted 0 times
        members = rows if len(rows) else self._epoch[1][position][:1]
        input_ids, attention_mask = pad_batch([self.sequences[i] for i in members], self.pad_id)
        labels = torch.tensor([self.targets[i] for i in members], dtype=torch.long)
        extra = {"class_weights": self.class_weights} if self.class_weights is not None else {}
        n_targets = float(self.class_weights[labels].sum()) if self.class_weights is not None else float(len(labels))
        return Batch({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, **extra},
                     n_tokens=int(attention_mask.sum() * weight), n_targets=n_targets * weight, epoch=epoch + 1,
                     epoch_end=position == self.steps_per_epoch - 1,
                     epoch_fraction=(position + 1) / self.steps_per_epoch,
                     seed=derived_seed(self.seed, step, chunk, 2), rows=rows)


def balanced_weights(targets: list[int], k: int) -> torch.Tensor:
    """n / (k * n_c) per class (scikit-learn's "balanced"): a rare class counts as much as a common one in the loss."""
    counts = torch.bincount(torch.tensor(targets), minlength=k).float()
    return len(targets) / (k * counts.clamp(min=1))


def prior_loss(targets: list[int], k: int, weights: torch.Tensor | None) -> float:
    """The training loss of a classifier that ignores its input and answers the label shares: the entropy of the
    shares, weighted as the loss weighs them (cross-entropy with weights averages over the weights)."""
    mass = torch.bincount(torch.tensor(targets), minlength=k).double()
    mass = mass * weights.double() if weights is not None else mass
    shares = mass[mass > 0] / mass.sum()
    return float(-(shares * shares.log()).sum())


def scrub_records(records: list[Record], kinds: tuple[str, ...]) -> dict[str, int]:
    """Scrub the records' text in place (the split is made first, so it does not depend on scrubbing)."""
    total = dict.fromkeys(kinds, 0)
    for record in records:
        record.text, counts = scrub(record.text, kinds)
        for kind, n in counts.items():
            total[kind] += n
    return total


def finetune(train_path: Path, base_dir: Path, out_dir: Path, cfg: FinetuneConfig, val_path: Path | None = None,
             run: RunOptions | None = None) -> dict:
    """Fine-tune the base encoder with a classification head; keep the epoch (or, with cfg.val_every, the point
    inside one) with the best validation accuracy (of the weights' moving average, unless cfg.ema_decay is 0).

    A resumable checkpoint is saved at the end of every epoch (and as run.save_every / save_minutes ask).
    Under torchrun, every process runs this with the same arguments (see tinylm.distributed).
    """
    run = (run or RunOptions()).check()
    with distributed.session(run.device) as world:
        return _finetune(train_path, base_dir, out_dir, cfg, val_path, run, world)


def _finetune(train_path: Path, base_dir: Path, out_dir: Path, cfg: FinetuneConfig, val_path: Path | None,
              run: RunOptions, world: World) -> dict:
    encoding = run.encoding
    check_positive(cfg, ("epochs", "max_minutes", "batch_size", "grad_accum", "lr", "seq_len", "log_every", "val_every"))
    if cfg.pooling not in POOLINGS:
        raise TinyLMError(f"--pooling must be one of {', '.join(POOLINGS)}, got {cfg.pooling!r}")
    if cfg.long_docs not in LONG_DOCS:
        raise TinyLMError(f"--long-docs must be truncate or windows, got {cfg.long_docs!r}")
    if cfg.class_weights not in ("none", "balanced"):
        raise TinyLMError(f"--class-weights must be none or balanced, got {cfg.class_weights!r}")
    if not 0 <= cfg.ema_decay < 1:
        raise TinyLMError(f"--ema-decay must be in [0, 1), got {cfg.ema_decay:g} (0 keeps the last weights)")
    if not 0 <= cfg.dropout < 1:
        raise TinyLMError(f"--dropout must be in [0, 1), got {cfg.dropout:g}")
    if not 0 < cfg.val_fraction < 1:
        raise TinyLMError(f"--val-fraction must be in (0, 1), got {cfg.val_fraction}")
    started = now()
    base, tokenizer, _ = load_checkpoint(base_dir, expect_kind="mlm")
    scrub_kinds = resolve_scrub(run.scrub_kinds, base_dir, tokenizer)
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
    log = prepare_out_dir(out_dir, run, world)
    dev = world.device
    resolved_precision = resolve_precision(run.precision, dev)

    if world.is_main:
        (Path(out_dir) / RUN_CONFIG).write_text(to_toml({"train": cfg}), encoding="utf-8")
    torch.manual_seed(cfg.seed)
    config = replace(base.config, hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    model = BertForSequenceClassification(config, num_labels=len(labels), pooling=cfg.pooling)
    model.bert.load_state_dict(base.bert.state_dict(), strict=False)  # the pooler is new, as in BERT fine-tuning
    del base
    sequences, owners = encode_for_classification(tokenizer, [r.text for r in train_records], cfg.seq_len,
                                                  cfg.long_docs)  # with windows, each window carries its label
    targets = [label2id[train_records[i].label] for i in owners]
    weights = balanced_weights(targets, len(labels)) if cfg.class_weights == "balanced" else None
    batches = ClassificationBatches(sequences, targets, cfg.batch_size, cfg.seed, tokenizer.token_to_id("[PAD]"),
                                    weights, world.layout(cfg.grad_accum))
    steps_per_epoch = batches.steps_per_epoch
    console.print(f"fine-tuning on {len(train_records):,} documents ({len(labels)} labels), validating on "
                  f"{len(val_records):,}; {cfg.epochs} epochs of {steps_per_epoch} steps, "
                  f"{describe_batch(cfg, world, 'documents')}, {resolved_precision} on {dev.type}")

    id2label = dict(enumerate(labels))
    args = {"stage": "finetune", "command": run.command, "train_data": str(train_path), "base": str(base_dir),
            "val_data": str(val_path) if val_path else None, "precision": resolved_precision, "train": asdict(cfg),
            "processes": world.size, "scrub_pii": list(scrub_kinds or [])}  # predict and eval read this and scrub their input the same way
    manifest = dict(kind="classifier", inputs=inputs, parents=[parent_record(base_dir, "base")],
                    config={**args, "labels": labels}, command=run.command, started=started, record_host=run.record_host,
                    scrub=scrub_record(scrub_kinds, scrub_counts), hashing_s=hashing_s)
    best = {"val_accuracy": -1.0}

    def validate(epoch: int, step: int) -> dict:
        figures = {"val_accuracy": 0.0, "val_macro_f1": 0.0}
        if world.is_main:  # the others wait: rank 0 validates and saves
            probs = predict_proba(model, tokenizer, [r.text for r in val_records], cfg.seq_len, device=dev,
                                  long_docs=cfg.long_docs)
            report = classification_report([label2id[r.label] for r in val_records], probs.argmax(-1).tolist(), labels)
            figures = {"val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]}
        figures = dict(zip(figures, world.all_sum(list(figures.values()))))  # rank 0's, known to all
        improved = figures["val_accuracy"] > best["val_accuracy"]
        done = step - (epoch - 1) * steps_per_epoch
        part = "" if done == steps_per_epoch else f" ({done} of its {steps_per_epoch} steps" + (
            ", the budget's end)" if step == loop.max_steps else ")")
        console.print(f"epoch {epoch}{part}: val accuracy {figures['val_accuracy']:.4f}  macro-F1 "
                      f"{figures['val_macro_f1']:.4f}" + ("  [green]best, saved[/]" if improved else ""))
        if improved:
            best.update(figures, epoch=epoch, step=step)
            if world.is_main:
                save_checkpoint(out_dir, model, tokenizer, {**args, "best": dict(best)}, id2label,
                                provenance=build_manifest(**manifest))
        return figures

    loop = loop_config(cfg, run, cfg.epochs * steps_per_epoch, resolved_precision, "finetune")
    loop.save_at_epoch_end, loop.step_multiple, loop.ema_decay = True, steps_per_epoch, cfg.ema_decay
    identity = {"inputs": [r["sha256"] for r in inputs], "base": parent_record(base_dir, "base")["sha256"],
                "train": batch_identity(cfg, world), "precision": resolved_precision, "labels": labels}
    summary = train(model, batches, loop, log, dev, out_dir=Path(out_dir), run_args=identity, resume=run.resume,
                    on_validate=validate, stage_state=best, world=world)
    if world.is_main:  # the run is complete: its best model is the hand-off
        shutil.rmtree(checkpoint_root(out_dir), ignore_errors=True)
    prior = prior_loss(targets, len(labels), weights)
    if summary.get("loss", 0.0) > 0.95 * prior:
        console.print(f"[yellow]warning:[/] the training loss ended at {summary['loss']:.4f}, where predicting the label "
                      f"shares alone scores {prior:.4f}: the classifier learnt next to nothing from the text. A lower "
                      f"--lr (this run {cfg.lr:g}) or a longer-pretrained base usually helps")
    return {**summary, "best": best, "prior_loss": prior}

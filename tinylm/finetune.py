"""Sequence classification: base checkpoint + labelled data -> classifier checkpoint (kind "classifier")."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from tinylm import distributed
from tinylm.checkpoint import load_checkpoint, save_checkpoint
from tinylm.config import ClassWeights, FinetuneConfig, RunOptions, to_toml
from tinylm.data import Record, encode_for_classification, pad_batch, read_records
from tinylm.devices import console, resolve_precision
from tinylm.distributed import Layout, World
from tinylm.errors import TinyLMError
from tinylm.files import RUN_CONFIG, SELF_TRAINING_FILE, read_json
from tinylm.evaluate import classification_report, multi_label_report, predict_proba
from tinylm.labels import (MULTI_LABEL, SINGLE_LABEL, LabelScheme, balanced_pos_weight, choose_thresholds,
                           multi_hot, multi_label_decisions, multi_label_prior, multi_label_prior_loss,
                           split_labels)
from tinylm.model import BertForSequenceClassification, soft_target_loss
from tinylm.pii import scrub
from tinylm.provenance import build_manifest, file_records, now, parent_record, resolve_scrub, scrub_record
from tinylm.self_training import (STUDENT_NOISE, TEACHER_SHARE, RoundLog, SelfTraining, class_floors,
                                  estimated_accuracy, pool_teachers, read_state, select_pseudo_labels, selection_digest,
                                  write_state)
from tinylm.state import remove_checkpoints
from tinylm.tokenizer import MASK, PAD
from tinylm.train import (Batch, MetricsLog, Plan, batch_identity, derived_seed, describe_batch, prepare_out_dir,
                          train)


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

    def __init__(self, sequences: list[list[int]], targets, batch_size: int, seed: int, pad_id: int,
                 class_weights: torch.Tensor | None = None, layout: Layout = Layout(),
                 pos_weight: torch.Tensor | None = None, noise: tuple[float, int] | None = None):
        """targets: a class id per sequence, or a (sequences, labels) array: class probabilities (single-label soft
        targets) or 0/1 (multi-label).
        noise: (probability, mask id): each token of a document but [CLS] and [SEP] is replaced by [MASK] with that
        probability, afresh in every batch (the noise of a self-training student, see tinylm.self_training)."""
        self.sequences, self.batch_size, self.seed, self.pad_id = sequences, batch_size, seed, pad_id
        self.noise = noise
        self.targets = np.asarray(targets)
        self.class_weights, self.pos_weight, self.layout = class_weights, pos_weight, layout
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
        if self.noise is not None:
            input_ids = self.masked(input_ids, attention_mask, derived_seed(self.seed, step, chunk, 3))
        labels = torch.from_numpy(self.targets[members])
        extra = {"class_weights": self.class_weights} if self.class_weights is not None else {}
        if self.pos_weight is not None:
            extra["pos_weight"] = self.pos_weight
        n_targets = float(len(labels))
        if self.class_weights is not None:  # class ids, or class probabilities (soft targets)
            n_targets = float((labels @ self.class_weights if labels.is_floating_point()
                               else self.class_weights[labels]).sum())
        return Batch({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels, **extra},
                     n_tokens=int(attention_mask.sum() * weight), n_targets=n_targets * weight, epoch=epoch + 1,
                     epoch_end=position == self.steps_per_epoch - 1,
                     epoch_fraction=(position + 1) / self.steps_per_epoch,
                     seed=derived_seed(self.seed, step, chunk, 2), rows=rows)


    def masked(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, seed: int) -> torch.Tensor:
        probability, mask_id = self.noise
        draw = torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(seed))
        inner = attention_mask.bool()
        inner[:, 0] = False  # [CLS]
        inner[torch.arange(len(inner)), attention_mask.sum(1) - 1] = False  # [SEP]
        return input_ids.masked_fill(inner & (draw < probability), mask_id)


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


def soft_prior_loss(targets: np.ndarray, weights: torch.Tensor | None) -> float:
    """prior_loss for class probabilities: the soft-target loss of the best constant answer, the targets' weighted
    mean (tinylm.model.soft_target_loss)."""
    targets = torch.from_numpy(targets).double()
    mass = targets * (weights.double() if weights is not None else 1.0)
    mean = (mass.sum(0) / mass.sum()).clamp_min(1e-300)  # a class no target gives mass to adds 0 x log of it
    return float(soft_target_loss(mean.log().expand_as(targets), targets,
                                  weights.double() if weights is not None else None))


def scrub_records(records: list[Record], kinds: tuple[str, ...]) -> dict[str, int]:
    """Scrub the records' text in place (the split is made first, so it does not depend on scrubbing)."""
    total = dict.fromkeys(kinds, 0)
    for record in records:
        record.text, counts = scrub(record.text, kinds)
        for kind, n in counts.items():
            total[kind] += n
    return total


def finetune(train_path: Path, base_dir: Path, out_dir: Path, cfg: FinetuneConfig, val_path: Path | None = None,
             run: RunOptions | None = None, self_training: SelfTraining | None = None) -> dict:
    """Fine-tune the base encoder with a classification head; keep the epoch (or, with val_every, the point
    inside one) with the best validation accuracy (of the weights' moving average, unless cfg.ema_decay is 0).
    With self_training, unlabelled documents are learnt from too, in rounds (see tinylm.self_training).

    A resumable checkpoint is saved at the end of every epoch (and as run.save_every / save_minutes ask).
    Under torchrun, every process runs this with the same arguments (see tinylm.distributed).
    """
    run = run or RunOptions()
    with distributed.session(run.device) as world:
        return _finetune(train_path, base_dir, out_dir, cfg, val_path, run, world, self_training)


def _finetune(train_path: Path, base_dir: Path, out_dir: Path, cfg: FinetuneConfig, val_path: Path | None,
              run: RunOptions, world: World, self_training: SelfTraining | None) -> dict:
    started = now()
    base, tokenizer, _ = load_checkpoint(base_dir, expect_kind="mlm")
    scrub_kinds = resolve_scrub(run.scrub_kinds, base_dir, tokenizer)
    cfg = resolve_seq_len(cfg, base.config.max_position_embeddings)
    data = LabelledData.read(train_path, val_path, cfg, run.encoding)
    pool_counts = read_pool(self_training, data, cfg, run) if self_training else None
    scrub_counts = data.scrub(scrub_kinds) if scrub_kinds else None
    if self_training and scrub_kinds:
        self_training.texts = [scrub(text, scrub_kinds)[0] for text in self_training.texts]
    log = prepare_out_dir(out_dir, run, world, unfinished=bool(self_training) and unfinished_rounds(out_dir))
    precision = resolve_precision(run.precision, world.device)
    if world.is_main:
        (Path(out_dir) / RUN_CONFIG).write_text(to_toml({"train": cfg}), encoding="utf-8")
    console.print(f"fine-tuning on {len(data.train):,} documents ({len(data.labels)}"
                  f"{' multi-label' if cfg.multi_label else ''} labels), validating on {len(data.val):,}"
                  + (f"; learning from {pool_counts['pool']:,} unlabelled documents too, in "
                     f"{self_training.rounds} self-training rounds" if self_training else "")
                  + f"; {precision} on {world.device.type}")
    inputs, hashing_s = data.file_records()
    if self_training:
        unlabelled, seconds = file_records(self_training.paths)
        inputs, hashing_s = inputs + [{**r, "role": "unlabelled"} for r in unlabelled], hashing_s + seconds
    args = {"stage": "finetune", "command": run.command, "train_data": str(train_path), "base": str(base_dir),
            "val_data": str(val_path) if val_path else None, "precision": precision, "train": cfg.flat(),
            "processes": world.size, "scrub_pii": list(scrub_kinds or [])}  # predict and eval scrub their input alike
    if self_training:
        args["self_training"] = {"unlabelled": [str(p) for p in self_training.paths], **self_training.recipe(),
                                 **pool_counts}
    manifest = dict(kind="classifier", inputs=inputs, parents=[parent_record(base_dir, "base")],
                    config={**args, "labels": data.labels}, command=run.command, started=started,
                    record_host=run.record_host, scrub=scrub_record(scrub_kinds, scrub_counts), hashing_s=hashing_s)
    best = BestEpoch(tokenizer, data, cfg, world, out_dir, args, manifest)
    identity = {"inputs": [r["sha256"] for r in inputs], "base": parent_record(base_dir, "base")["sha256"],
                "train": batch_identity(cfg, world), "precision": precision, "labels": data.labels,
                **(self_training.recipe() if self_training else {})}
    rounds = Rounds(base, tokenizer, data, cfg, world, run, out_dir, log, precision, best, identity)
    if self_training:
        summary, prior = self_train(rounds, self_training)
    else:
        summary, prior = rounds.fit(data.train, cfg.train.max_minutes)
    if world.is_main:  # the run is complete: its best model is the hand-off
        remove_checkpoints(out_dir)
    warn_if_nothing_learnt(summary, prior, cfg)
    return {**summary, "best": best.best, "prior_loss": prior}


class Rounds:
    """What every round of a fine-tuning run shares (plain fine-tuning is one round): fit() trains a fresh
    classifier from the base on some documents, validating as it goes; `best` keeps the best point of all rounds."""

    def __init__(self, base, tokenizer, data: LabelledData, cfg: FinetuneConfig, world: World, run: RunOptions,
                 out_dir: Path, log: MetricsLog, precision: str, best: "BestEpoch", identity: dict):
        self.base, self.tokenizer, self.data, self.cfg, self.world, self.run = base, tokenizer, data, cfg, world, run
        self.out_dir, self.log, self.precision, self.best, self.identity = out_dir, log, precision, best, identity

    def fit(self, records: list[Record], minutes: float | None, round_: int | None = None,
            soft: np.ndarray | None = None) -> tuple[dict, float]:
        """(the loop's summary, the prior loss: what a classifier ignoring the text scores). soft: the records' class
        probabilities to learn instead of their labels (a student's soft targets); the labels still set the class
        weights and the prior."""
        cfg, data = self.cfg, self.data
        model = classifier_from_base(self.base, cfg, len(data.labels))
        sequences, owners = encode_for_classification(self.tokenizer, [r.text for r in records], cfg.train.seq_len,
                                                      cfg.long_docs)  # with windows, each window carries its label(s)
        targets = data.targets(records)[owners]
        soft = None if soft is None else soft[owners]
        balanced = cfg.class_weights == ClassWeights.balanced
        if cfg.multi_label:
            weights, pos_weight = None, balanced_pos_weight(targets) if balanced else None
            prior = multi_label_prior_loss(targets, pos_weight)
            start_at_prior(model, multi_label_prior(targets, pos_weight))
        else:
            weights, pos_weight = balanced_weights(targets.tolist(), len(data.labels)) if balanced else None, None
            prior = prior_loss(targets.tolist(), len(data.labels), weights) if soft is None else \
                soft_prior_loss(soft, weights)
        noise = (STUDENT_NOISE, self.tokenizer.token_to_id(MASK)) if round_ else None  # a student learns under noise
        batches = ClassificationBatches(sequences, targets if soft is None else soft, cfg.train.batch_size,
                                        cfg.train.seed, self.tokenizer.token_to_id(PAD), weights,
                                        self.world.layout(cfg.train.grad_accum), pos_weight, noise)
        what = "finetune" if round_ is None else f"round {round_}"
        console.print(f"{what}: {len(records):,} documents, {cfg.epochs} epochs of {batches.steps_per_epoch} steps, "
                      f"{describe_batch(cfg.train, self.world, 'documents')}"
                      + (f", at most {minutes:.1f} min" if minutes else ""))
        plan = Plan(cfg.epochs * batches.steps_per_epoch, self.precision, what, batches.steps_per_epoch,
                    cfg.ema_decay, save_at_epoch_end=True)
        self.best.start_round(model, plan, round_)
        identity = self.identity if round_ is None else {**self.identity, "round": round_}
        log = self.log if round_ is None else RoundLog(self.log, round_)
        summary = train(model, batches, replace(cfg.train, max_minutes=minutes), plan, log, self.run, self.world,
                        Path(self.out_dir), identity, on_validate=self.best.validate, stage_state=self.best.best)
        return summary, prior

    def best_model(self):
        """The best classifier so far, as saved (rank 0 saves it; the others wait for it)."""
        self.world.barrier()
        return load_checkpoint(self.out_dir, expect_kind="classifier")[0]

    def probabilities(self, model, texts: list[str]) -> np.ndarray:
        return predict_proba(model, self.tokenizer, texts, self.cfg.train.seq_len, device=self.world.device,
                             long_docs=self.cfg.long_docs).numpy()


def read_pool(self_training: SelfTraining, data: "LabelledData", cfg: FinetuneConfig, run: RunOptions) -> dict:
    if cfg.multi_label:
        raise TinyLMError("--unlabelled works with single-label classification; it cannot be used with --multi-label")
    return self_training.read_pool([*data.train, *data.val], cfg.train.text_column, run.encoding)


def unfinished_rounds(out_dir: Path) -> bool:
    state = read_json(Path(out_dir) / SELF_TRAINING_FILE, default={})
    return bool(state) and not state.get("finished")


def self_train(rounds: Rounds, self_training: SelfTraining) -> tuple[dict, float]:
    """Round 0, then the student rounds (see tinylm.self_training); a resumed run skips the rounds it finished
    and continues the one it was in, with the pseudo-labels it had chosen."""
    data, world, out_dir, best = rounds.data, rounds.world, Path(rounds.out_dir), rounds.best
    total = 60 * rounds.cfg.train.max_minutes if rounds.cfg.train.max_minutes else None
    state = read_state(out_dir, rounds.identity) if rounds.run.resume else None
    state = state or {"identity": rounds.identity, "rounds": [], "current": None, "finished": False}
    if state["rounds"]:
        best.best.update(state["rounds"][-1]["best_after"])
    val_targets = data.targets(data.val)
    shares = np.bincount(data.targets(data.train), minlength=len(data.labels)) / len(data.train)

    def finish_round(record: dict, summary: dict):
        state["rounds"].append({**record, "best_after": dict(best.best), "train_s": summary["elapsed_s"]})
        if state["current"]:  # what the next round's n-gram teacher learns from besides the labelled documents
            state["learnt"] = {key: state["current"][key] for key in ("documents", "labels", "probabilities")
                               if key in state["current"]}
        state["current"] = None
        if world.is_main:  # every process keeps the state; rank 0 writes it
            remove_checkpoints(out_dir)  # before the state says the round is done: a resume must not find them
            write_state(out_dir, state)

    if not state["rounds"]:
        summary, prior = rounds.fit(data.train, total and total * TEACHER_SHARE / 60, round_=0)
        finish_round({"round": 0, "documents": len(data.train), "pseudo_labels": 0}, summary)
    for round_ in range(len(state["rounds"]), self_training.rounds + 1):
        current = state["current"]
        if current is None or current["round"] != round_:
            current = choose_pseudo_labels(rounds, self_training, round_, shares, val_targets, state, total)
            state["current"] = current
            if world.is_main:
                write_state(out_dir, state)
        pseudo = [Record(self_training.texts[i], data.labels[label])
                  for i, label in zip(current["documents"], current["labels"])]
        soft = None
        if self_training.soft_targets:  # the labelled documents' own labels, the teacher's probabilities for the rest
            soft = np.concatenate([np.eye(len(data.labels))[data.targets(data.train)],
                                   np.asarray(current["probabilities"]).reshape(-1, len(data.labels))])
            soft = soft.astype(np.float32)
        summary, prior = rounds.fit(data.train + pseudo, current["minutes"], round_=round_, soft=soft)
        finish_round(current["record"], summary)
    if world.is_main:
        state["finished"] = True
        write_state(out_dir, state)
    return summary, prior


def choose_pseudo_labels(rounds: Rounds, self_training: SelfTraining, round_: int, shares: np.ndarray,
                         val_targets: np.ndarray, state: dict, total: float | None) -> dict:
    """The round's pseudo-labels, from the best classifier so far, and the record of how they were chosen."""
    start = time.perf_counter()
    probs, val_probs, teachers = teach(rounds, self_training, val_targets, state.get("learnt"))
    documents, labels = select_pseudo_labels(probs, shares, self_training.share(round_))
    floors = class_floors(probs, documents)
    estimate = estimated_accuracy(val_probs, val_targets, floors)
    predict_s = time.perf_counter() - start
    record = {"round": round_, "teacher_val": dict(rounds.best.best), "teachers": teachers,
              "share": self_training.share(round_), "pseudo_labels": int(len(documents)),
              "per_label": {rounds.data.labels[c]: int((labels == c).sum()) for c in range(len(rounds.data.labels))},
              "lowest_confidence": {rounds.data.labels[c]: float(f) for c, f in enumerate(floors) if np.isfinite(f)},
              **estimate, "documents": len(rounds.data.train) + int(len(documents)), "predict_s": predict_s}
    console.print(f"round {round_}: {len(documents):,} pseudo-labels (the most confident {record['share']:.0%} of "
                  f"{len(self_training.texts):,}); the teacher is right on "
                  + (f"{estimate['val_accuracy_as_confident']:.1%}" if estimate["val_documents_as_confident"] else "-")
                  + f" of the {estimate['val_documents_as_confident']} validation documents it is as sure of"
                  + (" (teachers on validation: " + ", ".join(
                      f"{name} {t['val_accuracy']:.1%} at temperature {t['temperature']:.2f}"
                      for name, t in teachers.items()) + ")" if len(teachers) > 1 else ""))
    minutes = None
    if total:
        spent = sum(r.get("train_s", 0) + r.get("predict_s", 0) for r in state["rounds"]) + predict_s
        minutes = max(0.05, (total - spent) / (self_training.rounds - round_ + 1)) / 60
    return {"round": round_, "documents": documents.tolist(), "labels": labels.tolist(),
            **({"probabilities": probs[documents].tolist()} if self_training.soft_targets else {}),
            "digest": selection_digest(documents, labels), "minutes": minutes, "record": record}


def teach(rounds: Rounds, self_training: SelfTraining, val_targets: np.ndarray, learnt: dict | None):
    """The teacher's probabilities for the pool and the validation documents: the best classifier so far, with the
    n-gram classifier beside it unless told otherwise (see tinylm.self_training.pool_teachers)."""
    teacher, data = rounds.best_model(), rounds.data
    val = [r.text for r in data.val]
    views = {"transformer": (rounds.probabilities(teacher, self_training.texts), rounds.probabilities(teacher, val))}
    if self_training.ngram_teacher:
        pool, val_probs, learnt_from = self_training.ngram_view([r.text for r in data.train], data.targets(data.train),
                                                                len(data.labels), val, val_targets, learnt)
        views["ngrams"] = pool, val_probs
    probs, val_probs, record = pool_teachers(views, val_targets)
    if self_training.ngram_teacher:
        record["ngrams"]["documents"] = learnt_from
    return probs, val_probs, record


def resolve_seq_len(cfg: FinetuneConfig, limit: int) -> FinetuneConfig:
    """The documents' length in tokens: 256 unless given, at most the base's position limit."""
    if cfg.train.seq_len is None:
        return replace(cfg, train=replace(cfg.train, seq_len=min(256, limit)))
    if cfg.train.seq_len > limit:
        raise TinyLMError(f"--seq-len {cfg.train.seq_len} exceeds the model's max_position_embeddings {limit}")
    return cfg


def start_at_prior(model: BertForSequenceClassification, prior: np.ndarray):
    """A multi-label head's biases start at the logits of the label shares (RetinaNet's prior initialisation, Lin
    et al., ICCV 2017). From 0 (probability 0.5 for every label) the first steps of binary cross-entropy would
    push every logit down, and AdamW moves a bias by about the learning rate per step, so the encoder is bent to do
    it instead. On Reuters (90 topics of about 1% each, 5 minutes) the loss then sat near the prior's for two epochs
    and validation micro-F1 read 0.64 at the best global threshold; started at the prior, 0.76. Single-label heads
    keep the usual zero bias."""
    with torch.no_grad():
        model.classifier.bias.copy_(torch.logit(torch.from_numpy(prior)).to(model.classifier.bias.dtype))


def classifier_from_base(base, cfg: FinetuneConfig, num_labels: int) -> BertForSequenceClassification:
    """The base's encoder under a fresh classification head (the pooler is new too, as in BERT fine-tuning), with
    the fine-tuning dropout."""
    torch.manual_seed(cfg.train.seed)
    config = replace(base.config, hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout)
    model = BertForSequenceClassification(config, num_labels=num_labels, pooling=cfg.pooling,
                                          problem_type=MULTI_LABEL if cfg.multi_label else SINGLE_LABEL)
    model.bert.load_state_dict(base.bert.state_dict(), strict=False)
    return model


class LabelledData:
    """The training and validation documents (a stratified split of TRAIN unless a validation file is given)
    and the labels, sorted. Multi-label (separator given): a record's label cell holds its label names joined by
    the separator, and may be empty."""

    def __init__(self, paths: list[Path], train: list[Record], val: list[Record], labels: list[str],
                 separator: str | None = None):
        self.paths, self.train, self.val, self.labels, self.separator = paths, train, val, labels, separator
        self.label2id = {label: i for i, label in enumerate(labels)}

    def label_set(self, record: Record) -> list[str]:
        return split_labels(record.label, self.separator)

    def targets(self, records: list[Record]) -> np.ndarray:
        """Class ids (N,), or multi-label 0/1 (N, labels)."""
        if self.separator is None:
            return np.array([self.label2id[r.label] for r in records], dtype=np.int64)
        return multi_hot([self.label_set(r) for r in records], self.label2id)

    @classmethod
    def read(cls, train_path: Path, val_path: Path | None, cfg: FinetuneConfig, encoding: str) -> "LabelledData":
        separator = cfg.label_separator if cfg.multi_label else None
        records = [r for r in read_records(train_path, cfg.train.text_column, cfg.label_column, encoding=encoding,
                                           empty_labels=cfg.multi_label) if r.text.strip()]
        if separator is None:
            labels = sorted({r.label for r in records})
            warn_if_label_sets(records, labels)
            if len(labels) < 2:
                raise TinyLMError(f"{train_path} has only one label ({labels[0]!r}); a classifier needs at least two")
            strata = [r.label for r in records]
        else:
            sets = [split_labels(r.label, separator) for r in records]
            labels = sorted({name for names in sets for name in names})
            if not labels:
                raise TinyLMError(f"{train_path}: every label cell is empty; multi-label data needs label names "
                                  f"joined by {separator!r}")
            strata = [separator.join(names) for names in sets]  # the label set is the stratum
        if val_path is None:
            train_idx, val_idx = stratified_split(strata, cfg.val_fraction, cfg.train.seed)
            return cls([train_path], [records[i] for i in train_idx], [records[i] for i in val_idx], labels, separator)
        val = read_records(val_path, cfg.train.text_column, cfg.label_column, encoding=encoding,
                           empty_labels=cfg.multi_label)
        seen = {name for r in val for name in split_labels(r.label, separator)} if separator else {r.label for r in val}
        unseen = sorted(seen - set(labels))
        if unseen:
            raise TinyLMError(f"--val {val_path} has label(s) {', '.join(map(repr, unseen))} that the training data lacks")
        return cls([train_path, val_path], records, val, labels, separator)

    def scrub(self, kinds: tuple[str, ...]) -> dict[str, int]:
        """Scrub the text in place (the split is made first, so it does not depend on scrubbing)."""
        return scrub_records([*self.train, *self.val], kinds)

    def file_records(self) -> tuple[list[dict], float]:
        """provenance.json's inputs: the validation file picks the saved epoch but is never trained on."""
        inputs, hashing_s = file_records(self.paths)
        for record, role in zip(inputs, ("train", "validation")):
            record["role"] = role
        return inputs, hashing_s


def warn_if_label_sets(records: list[Record], labels: list[str]):
    """Single-label data whose labels look like label sets ("a|b" beside "a" and "b") was likely meant as
    multi-label; the run goes on (a label may contain "|"), with a warning."""
    names = set(labels)
    joined = [label for label in labels if "|" in label and set(split_labels(label)) <= names]
    if joined:
        console.print(f"[yellow]warning:[/] label {joined[0]!r} looks like labels joined by '|'; for multi-label data "
                      "pass --multi-label (each joined name then is a label of its own)")


class BestEpoch:
    """on_validate for train(): scores the validation documents (rank 0, known to all) and keeps the best point
    so far, of every round, as the classifier checkpoint."""

    def __init__(self, tokenizer, data: LabelledData, cfg: FinetuneConfig, world: World, out_dir: Path, args: dict,
                 manifest: dict):
        self.tokenizer, self.data, self.cfg, self.world = tokenizer, data, cfg, world
        self.out_dir, self.args, self.manifest = out_dir, args, manifest
        # the figure that picks the kept point: accuracy, or multi-label micro-F1 (with the thresholds chosen for it)
        self.key = "val_micro_f1" if cfg.multi_label else "val_accuracy"
        self.best = {self.key: -1.0}  # the loop saves and restores it with the resumable state
        self.scheme = LabelScheme(data.labels)
        self.model, self.plan, self.round = None, None, None

    def start_round(self, model, plan: Plan, round_: int | None):
        """The model the next validations score, and its run's plan (round None: plain fine-tuning)."""
        self.model, self.plan, self.round = model, plan, round_

    def score(self) -> dict:
        if self.cfg.multi_label:
            return self.score_multi_label()
        figures = {"val_accuracy": 0.0, "val_macro_f1": 0.0}
        if self.world.is_main:  # the others wait: rank 0 validates and saves
            probs = self.val_probabilities()
            report = classification_report(self.data.targets(self.data.val).tolist(), probs.argmax(-1).tolist(),
                                           self.data.labels)
            figures = {"val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]}
        return self.world.all_sum_named(figures)

    def val_probabilities(self) -> torch.Tensor:
        return predict_proba(self.model, self.tokenizer, [r.text for r in self.data.val], self.cfg.train.seq_len,
                             device=self.world.device, long_docs=self.cfg.long_docs)

    def score_multi_label(self) -> dict:
        """Thresholds chosen on the validation documents, then the figures they give there."""
        figures = {"val_micro_f1": 0.0, "val_macro_f1": 0.0, "val_subset_accuracy": 0.0}
        if self.world.is_main:
            probs, truth = self.val_probabilities(), self.data.targets(self.data.val)
            thresholds = choose_thresholds(probs, truth, self.cfg.thresholds)
            self.scheme = LabelScheme(self.data.labels, MULTI_LABEL, thresholds, self.cfg.label_separator)
            report = multi_label_report(truth, multi_label_decisions(probs, thresholds).numpy(), self.data.labels)
            figures = {"val_micro_f1": report["micro_f1"], "val_macro_f1": report["macro_f1"],
                       "val_subset_accuracy": report["subset_accuracy"]}
        return self.world.all_sum_named(figures)

    def validate(self, epoch: int, step: int) -> dict:
        figures = self.score()
        # A point that ties the best so far replaces it: the kept point is the last of the ties, the longest trained
        # (and, in self-training, a student that has learnt from the pool too). With a few hundred labels or fewer,
        # validation has a few dozen documents, ties are the rule, and the first of them is often an early, barely
        # trained epoch: with 100 labels, the last of the ties read 0.845 / 0.547 on AG News / TREC documents held
        # out of everything, the first 0.801 / 0.521 (2 seeds; docs/quality.md, choosing the recipe).
        improved = figures[self.key] >= self.best[self.key]
        steps_per_epoch = self.plan.steps_per_epoch
        done = step - (epoch - 1) * steps_per_epoch
        part = "" if done == steps_per_epoch else f" ({done} of its {steps_per_epoch} steps" + (
            ", the budget's end)" if step == self.plan.max_steps else ")")
        shown = (f"val micro-F1 {figures['val_micro_f1']:.4f}  macro-F1 {figures['val_macro_f1']:.4f}  subset accuracy "
                 f"{figures['val_subset_accuracy']:.4f}" if self.cfg.multi_label else
                 f"val accuracy {figures['val_accuracy']:.4f}  macro-F1 {figures['val_macro_f1']:.4f}")
        where = "" if self.round is None else f"round {self.round}, "
        console.print(f"{where}epoch {epoch}{part}: {shown}" + ("  [green]best, saved[/]" if improved else ""))
        if improved:
            self.best.update(figures, epoch=epoch, step=step, **({} if self.round is None else {"round": self.round}))
            if self.world.is_main:
                save_checkpoint(self.out_dir, self.model, self.tokenizer, {**self.args, "best": dict(self.best)},
                                dict(enumerate(self.data.labels)), provenance=build_manifest(**self.manifest),
                                label_fields=self.scheme.config_fields())
        return figures


def warn_if_nothing_learnt(summary: dict, prior: float, cfg: FinetuneConfig):
    if summary.get("loss", 0.0) > 0.95 * prior:
        console.print(f"[yellow]warning:[/] the training loss ended at {summary['loss']:.4f}, where predicting the label "
                      f"shares alone scores {prior:.4f}: the classifier learnt next to nothing from the text. A lower "
                      f"--lr (this run {cfg.train.lr:g}) or a longer-pretrained base usually helps")

"""Self-training: fine-tuning that learns from unlabelled documents too (`tinylm finetune --unlabelled`).

Curriculum self-training (pseudo-labels as in Lee 2013 and Du et al., NAACL 2021; the growing share and the
fresh student of every round as in Cascante-Bonilla et al., AAAI 2021, "Curriculum Labeling"):

- round 0 is plain fine-tuning on the labelled documents;
- in round r of R, the best classifier so far (by validation) labels every unlabelled document, together with a
  bag-of-n-grams classifier (tinylm.ngrams: a second view that errs elsewhere, as in co-training, Blum & Mitchell
  1998) trained on the labelled documents and the previous round's pseudo-labels, which it could not have labelled
  alone; the two are calibrated on validation and multiplied; the most
  confident r/R of them are kept, class by class in the labelled documents' label shares (so that a class the
  teacher favours does not crowd out the others); a student is then fine-tuned from the same base, with a fresh
  head, on the labelled and the pseudo-labelled documents together, with 15% of its input tokens masked afresh in
  every batch (the noise of Noisy Student, Xie et al., CVPR 2020: a student that sees the documents as its teacher
  saw them only learns to copy it). A fresh student does not inherit the teacher's mistakes as weights, only as
  labels, which the labelled documents in its batches argue with.

Every round is validated like plain fine-tuning, and the best point of all rounds is kept: when the unlabelled
documents do not help on validation, the result is round 0, the plain fine-tune. The run folder's
self_training.json records each round: the pseudo-labels per class, the lowest confidence kept, and how accurate
the teacher is on the validation documents it is as confident about (an estimate of the pseudo-labels' accuracy).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinylm.config import SELF_TRAINING_ROUNDS
from tinylm.data import Record, read_records
from tinylm.errors import TinyLMError
from tinylm.files import SELF_TRAINING_FILE as STATE_FILE, read_json, write_json
from tinylm.ngrams import NgramClassifier, fit_temperature, pooled
from tinylm.train import MetricsLog

# The students' noise: a share of their input tokens replaced by [MASK] in every batch (as Noisy Student's students
# learn under noise that their teacher did not see): pretraining's masking rate, which the base has learnt to read.
STUDENT_NOISE = 0.15
NGRAM_PSEUDO_LABELS = 50_000  # the n-gram classifier's fit grows with its documents; beyond this, a sample
TEACHER_SHARE = 1 / 3  # of a --max-minutes budget, for round 0; the student rounds share the rest and what it leaves


@dataclass
class SelfTraining:
    """What `--unlabelled` asks for: the documents and the number of student rounds."""

    paths: list[Path]
    rounds: int = SELF_TRAINING_ROUNDS
    ngram_teacher: bool = True  # a bag-of-n-grams classifier teaches beside the transformer
    soft_targets: bool = False  # students learn the pooled teacher's probabilities, not only its labels
    ngram_cross_fit: bool = False  # the n-gram teacher of the pool learns the validation labels too (ngram_view)
    texts: list[str] = field(default_factory=list)  # the pool, once read (read_pool)

    def recipe(self) -> dict:
        """What makes a self-training run what it is: recorded in training_args.json and checked on resume."""
        return {"rounds": self.rounds, "ngram_teacher": self.ngram_teacher, "soft_targets": self.soft_targets,
                "ngram_cross_fit": self.ngram_cross_fit}

    def __post_init__(self):
        if self.rounds < 1:
            raise TinyLMError(f"--rounds must be at least 1 (got {self.rounds})")

    def read_pool(self, labelled: list[Record], text_column: str, encoding: str) -> dict:
        """The unlabelled documents, each once, without those that are labelled (training or validation): a
        validation document must not be learnt from, even with a pseudo-label. Returns counts for the record."""
        records = read_records(self.paths, text_column, None, encoding=encoding)
        known = {r.text.strip() for r in labelled}
        seen, pool = set(), []
        for record in records:
            text = record.text.strip()
            if text and text not in known and text not in seen:
                seen.add(text)
                pool.append(record.text)
        if not pool:
            names = ", ".join(map(str, self.paths))
            raise TinyLMError(f"--unlabelled {names}: no documents besides the labelled ones"
                              + (f" ({len(records):,} read, all empty or labelled)" if records else ""))
        self.texts = pool
        return {"read": len(records), "pool": len(pool), "dropped_labelled_or_repeated": len(records) - len(pool)}

    def share(self, round_: int) -> float:
        return round_ / self.rounds

    def ngram_view(self, train: list[str], targets: np.ndarray, num_labels: int, val: list[str],
                   val_targets: np.ndarray, learnt: dict | None = None):
        """The n-gram classifier's probabilities for the pool and the validation documents. It learns from the
        labelled training documents and, after a student round, from that round's pseudo-labels too (co-training,
        Blum & Mitchell 1998: the view that knows only words learns from the documents the pooled teachers were
        sure of, which it could not label alone), at most NGRAM_PSEUDO_LABELS of them, evenly spread.

        With ngram_cross_fit, the classifier that labels the pool also learns the validation documents (with 100
        labels, a rare class may have its only other example there), and the validation probabilities, which
        calibrate it, come from the fit without them: calibrated on documents it did not see, used with all it can
        learn (a temperature fitted on the smaller fit errs towards caution). The students' validation scores are
        then somewhat optimistic, which is why it is an option. Returns (pool, validation, how many documents the
        pool's classifier learnt from)."""
        texts, labels = list(train), np.asarray(targets)
        if learnt and learnt["documents"]:
            stride = -(-len(learnt["documents"]) // NGRAM_PSEUDO_LABELS)
            texts += [self.texts[i] for i in learnt["documents"][::stride]]
            labels = np.concatenate([labels, np.asarray(learnt["labels"][::stride], dtype=labels.dtype)])
        ngrams = NgramClassifier().fit(texts, labels, num_labels)
        val_probs = ngrams.predict_proba(val)
        if self.ngram_cross_fit and val:
            texts, labels = texts + list(val), np.concatenate([labels, np.asarray(val_targets, dtype=labels.dtype)])
            ngrams = NgramClassifier().fit(texts, labels, num_labels)
        return ngrams.predict_proba(self.texts), val_probs, len(texts)


def pool_teachers(views: dict[str, tuple[np.ndarray, np.ndarray]], val_targets: np.ndarray):
    """The teachers' views (name: (pool probabilities, validation probabilities)) as one teacher: each calibrated
    on the validation documents by temperature, then multiplied (log-linear pooling), so that an overconfident
    view counts for what its validation record earns. One view is taken as it is. Returns (pool, validation,
    the record: each view's validation accuracy and temperature)."""
    record = {name: {"val_accuracy": float((val.argmax(-1) == val_targets).mean()) if len(val_targets) else None}
              for name, (_, val) in views.items()}
    if len(views) == 1:
        (pool, val), = views.values()
        return pool, val, record
    temperatures = [fit_temperature(val, val_targets) for _, val in views.values()]
    for name, t in zip(views, temperatures):
        record[name]["temperature"] = t
    pool = pooled([p for p, _ in views.values()], temperatures)
    val = pooled([v for _, v in views.values()], temperatures)
    return pool, val, record


def select_pseudo_labels(probs: np.ndarray, shares: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(documents, labels): of the documents predicted as class c, the most confident, as many as c's share of
    `fraction` x all documents (fewer where fewer are predicted as c). Ties go to the earlier document."""
    confidence, predicted = probs.max(-1), probs.argmax(-1)
    wanted = np.round(shares * fraction * len(probs)).astype(int)
    chosen = []
    for c, n in enumerate(wanted):
        members = np.flatnonzero(predicted == c)
        order = members[np.argsort(-confidence[members], kind="stable")]
        chosen.append(order[:n])
    documents = np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=int)
    return documents, predicted[documents]


def class_floors(probs: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """Per class, the lowest confidence among the documents kept with that label (inf where none is kept)."""
    floors = np.full(probs.shape[1], np.inf)
    predicted, confidence = probs.argmax(-1), probs.max(-1)
    for i in documents:
        floors[predicted[i]] = min(floors[predicted[i]], confidence[i])
    return floors


def estimated_accuracy(val_probs: np.ndarray, val_targets: np.ndarray, floors: np.ndarray) -> dict:
    """The teacher on the validation documents it is as confident about as about the kept pseudo-labels: how many
    there are and how many it labels right, an estimate of the pseudo-labels' accuracy."""
    predicted, confidence = val_probs.argmax(-1), val_probs.max(-1)
    confident = confidence >= floors[predicted]
    n = int(confident.sum())
    return {"val_documents_as_confident": n,
            "val_accuracy_as_confident": float((predicted[confident] == val_targets[confident]).mean()) if n else None}


def selection_digest(documents: np.ndarray, labels: np.ndarray) -> str:
    return hashlib.sha256(np.stack([documents, labels]).astype(np.int64).tobytes()).hexdigest()[:16]


class RoundLog(MetricsLog):
    """metrics.jsonl of a self-training run: every record names its round, and a resumed round drops only its own
    records after the checkpoint (the steps of each round count from 0)."""

    def __init__(self, log: MetricsLog, round_: int):
        self.log, self.round = log, round_

    def write(self, record: dict):
        self.log.write({"round": self.round, **record})

    def truncate_after(self, step: int, resumed=None):
        self.log.truncate_after(step, lambda record: record.get("round") == self.round)


def read_state(out_dir: Path, identity: dict) -> dict | None:
    """A resumed run's self_training.json, if it belongs to this run (the same inputs and settings)."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        return None
    state = read_json(path)
    if state.get("identity") != identity:
        raise TinyLMError(f"--resume: {path} was written by a run with other data or settings; give the same "
                          "arguments as the first time, or --overwrite to start again")
    return state


def write_state(out_dir: Path, state: dict):
    """Atomically: a kill leaves the previous state whole."""
    path = Path(out_dir) / STATE_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    write_json(tmp, state)
    tmp.replace(path)

"""What a classifier's outputs mean, per problem type: label sets read from table cells, probabilities from logits,
labels from probabilities, and the thresholds a multi-label classifier decides with.

Single-label (softmax, one label per document) and multi-label (a sigmoid per label, any number of labels per
document, as transformers' problem_type="multi_label_classification") each have one function from a probability
tensor to labels, so that every way of computing the probabilities (PyTorch here, or another runtime) decides alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tinylm.errors import TinyLMError

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL)
SEPARATOR = "|"
# The thresholds tried on validation. Per label, a label needs this many validation positives for a threshold of
# its own: with one or two, the best threshold is whatever separates those few documents, which does not carry over.
THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)
MIN_POSITIVES = 3
POS_WEIGHT_CAP = 50.0  # balanced pos_weight of a label seen a handful of times would otherwise be in the thousands


def split_labels(cell: str, separator: str = SEPARATOR) -> list[str]:
    """The label names in a multi-label cell, sorted; an empty cell is no label."""
    return sorted({part.strip() for part in cell.split(separator) if part.strip()})


def multi_hot(label_sets: list[list[str]], label2id: dict[str, int]) -> np.ndarray:
    """(N, num_labels) float32 of 0/1: the targets binary cross-entropy compares the sigmoids with."""
    targets = np.zeros((len(label_sets), len(label2id)), dtype=np.float32)
    for row, names in enumerate(label_sets):
        targets[row, [label2id[name] for name in names]] = 1.0
    return targets


def probabilities(logits: torch.Tensor, problem_type: str = SINGLE_LABEL) -> torch.Tensor:
    """softmax over the labels (single-label) or a sigmoid per label (multi-label), in float32."""
    logits = logits.float()
    return torch.sigmoid(logits) if problem_type == MULTI_LABEL else torch.softmax(logits, dim=-1)


def single_label_decisions(probs: torch.Tensor) -> torch.Tensor:
    """(N,) the most probable label of each document."""
    return probs.argmax(-1)


def multi_label_decisions(probs: torch.Tensor, thresholds: torch.Tensor | list[float]) -> torch.Tensor:
    """(N, num_labels) bool: a label is predicted when its probability reaches its threshold (or empty set)."""
    return probs >= torch.as_tensor(thresholds, dtype=probs.dtype)


@dataclass
class LabelScheme:
    """A classifier's labels and how its probabilities become labels; from a checkpoint's config.json."""

    labels: list[str]
    problem_type: str = SINGLE_LABEL
    thresholds: list[float] | None = None  # multi-label: one per label, in label order
    separator: str = SEPARATOR

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    @classmethod
    def from_meta(cls, meta: dict) -> "LabelScheme":
        labels = [meta["id2label"][i] for i in range(len(meta["id2label"]))]
        if meta.get("problem_type", SINGLE_LABEL) == SINGLE_LABEL:
            return cls(labels)
        return cls(labels, MULTI_LABEL, [meta["thresholds"][label] for label in labels],
                   meta.get("label_separator", SEPARATOR))

    def config_fields(self) -> dict:
        """What config.json adds for this scheme: nothing for single-label (its files stay as they were)."""
        if not self.multi_label:
            return {}
        return {"problem_type": MULTI_LABEL, "thresholds": dict(zip(self.labels, self.thresholds)),
                "label_separator": self.separator}

    def rows(self, probs: torch.Tensor) -> list[dict]:
        """Per document: "label" and its "probability" (single-label) or "labels", a list (multi-label), and
        "probabilities" of every label, rounded for output files."""
        rounded = [{label: round(p, 6) for label, p in zip(self.labels, row)} for row in probs.tolist()]
        if self.multi_label:
            chosen = multi_label_decisions(probs, self.thresholds).tolist()
            return [{"labels": [label for label, on in zip(self.labels, flags) if on], "probabilities": p}
                    for flags, p in zip(chosen, rounded)]
        best = single_label_decisions(probs).tolist()
        return [{"label": self.labels[i], "probability": p[self.labels[i]], "probabilities": p}
                for i, p in zip(best, rounded)]


def check_problem_type(meta: dict, wanted: str, ckpt_dir) -> None:
    """For code that serves one problem type only: a one-line error naming what the checkpoint is."""
    found = meta.get("problem_type", SINGLE_LABEL)
    if found != wanted:
        names = {SINGLE_LABEL: "single-label", MULTI_LABEL: "multi-label (fine-tuned with --multi-label)"}
        raise TinyLMError(f"{ckpt_dir} is a {names[found]} classifier, but this needs a {names[wanted]} one")


# ---- thresholds, chosen on validation ------------------------------------------------------------------------

def _counts(probs: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn), each (num_labels, len(THRESHOLD_GRID)): the counts at every threshold of the grid."""
    predicted = probs[:, :, None] >= THRESHOLD_GRID  # (N, K, G)
    positive = truth.astype(bool)[:, :, None]
    tp = (predicted & positive).sum(0)
    fp = (predicted & ~positive).sum(0)
    fn = (~predicted & positive).sum(0)
    return tp, fp, fn


def _f1(tp, fp, fn) -> np.ndarray:
    denominator = 2 * tp + fp + fn
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def _middle_of_best(scores: np.ndarray) -> float:
    """The threshold in the middle of the best ones: F1 is flat over ranges of thresholds, and the middle of the
    range is the choice least tied to the validation documents at its edges."""
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(THRESHOLD_GRID[best[len(best) // 2]])


def choose_thresholds(probs: np.ndarray | torch.Tensor, truth: np.ndarray, rule: str = "per-label") -> list[float]:
    """Thresholds, one per label: "global" is the one threshold with the best micro-F1; "per-label" gives each
    label with at least MIN_POSITIVES validation positives the threshold of its best F1 among those that, with every
    other label at the global threshold, do not lower the micro-F1; the others keep the global one.

    Without that guard, a label the classifier has not learnt yet gets the threshold of "predict it everywhere"
    (the only F1 above 0 it has on a few validation positives), which floods every document with it: on Reuters
    after two epochs, test micro-F1 0.18 against 0.67 with the global threshold."""
    probs, truth = np.asarray(probs, dtype=np.float32), np.asarray(truth)
    tp, fp, fn = _counts(probs, truth)
    micro = _f1(tp.sum(0), fp.sum(0), fn.sum(0))
    shared = _middle_of_best(micro)
    if rule == "global":
        return [shared] * probs.shape[1]
    g = int(np.flatnonzero(THRESHOLD_GRID == shared)[0])

    def others_at_global(counts):  # (labels, grid): the counts of all labels, label k at each threshold (row k)
        return counts[:, g].sum() - counts[:, g:g + 1] + counts

    allowed = _f1(others_at_global(tp), others_at_global(fp), others_at_global(fn)) >= micro[g] - 1e-12
    per_label, positives = np.where(allowed, _f1(tp, fp, fn), -1.0), truth.sum(0)
    return [_middle_of_best(per_label[k]) if positives[k] >= MIN_POSITIVES else shared for k in range(probs.shape[1])]


def balanced_pos_weight(targets: np.ndarray) -> torch.Tensor:
    """negatives / positives per label, at most POS_WEIGHT_CAP (1 for a label without positives): a label's
    positives weigh as much as its negatives in the binary cross-entropy."""
    positives = targets.sum(0)
    weight = np.where(positives > 0, (len(targets) - positives) / np.maximum(positives, 1), 1.0)
    return torch.tensor(np.clip(weight, 1.0, POS_WEIGHT_CAP), dtype=torch.float32)


def _shares_and_weights(targets: np.ndarray, pos_weight: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
    share = targets.mean(0).astype(np.float64)
    return share, pos_weight.double().numpy() if pos_weight is not None else np.ones_like(share)


def multi_label_prior(targets: np.ndarray, pos_weight: torch.Tensor | None) -> np.ndarray:
    """Per label, the constant probability that minimises the (pos_weight-weighted) binary cross-entropy on these
    targets: the label's share, shifted by its weight; kept off 0 and 1 so that its logit is finite."""
    share, w = _shares_and_weights(targets, pos_weight)
    return np.clip(w * share / (w * share + 1 - share), 1e-6, 1 - 1e-6)


def multi_label_prior_loss(targets: np.ndarray, pos_weight: torch.Tensor | None) -> float:
    """The binary cross-entropy of a classifier that ignores the text and answers the best constant per label,
    weighted as the loss weighs it, averaged over the labels as the loss is."""
    share, w = _shares_and_weights(targets, pos_weight)
    q = multi_label_prior(targets, pos_weight)
    return float(np.mean(-(w * share * np.log(q) + (1 - share) * np.log(1 - q))))

"""Classification metrics (accuracy, macro-F1, per class, confusion) and batched prediction."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer

from tinylm.checkpoint import ARGS_FILE, load_checkpoint
from tinylm.data import encode_documents, pad_batch, read_records
from tinylm.errors import TinyLMError
from tinylm.pii import DEFAULT_KINDS, scrub_all


@torch.no_grad()
def predict_proba(model, tokenizer: Tokenizer, texts: list[str], seq_len: int, batch_size: int = 64,
                  device: torch.device | None = None) -> torch.Tensor:
    """Class probabilities (N, num_labels) in input order. Sorting by length keeps padding per batch small."""
    device = device or torch.device("cpu")
    model.to(device).eval()
    sequences = encode_documents(tokenizer, texts, seq_len)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    probs = torch.empty(len(sequences), model.num_labels)
    pad_id = tokenizer.token_to_id("[PAD]")
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        input_ids, attention_mask = pad_batch([sequences[i] for i in chunk], pad_id)
        logits = model(input_ids.to(device), attention_mask.to(device))
        probs[chunk] = torch.softmax(logits.float(), dim=-1).cpu()
    return probs


def classification_report(y_true: list[int], y_pred: list[int], labels: list[str]) -> dict:
    """accuracy, macro_f1, n, per_class {label: precision, recall, f1, support}, confusion[true][pred]."""
    k = len(labels)
    confusion = [[0] * k for _ in range(k)]
    for t, p in zip(y_true, y_pred):
        confusion[t][p] += 1
    per_class = {}
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted = sum(confusion[r][i] for r in range(k))
        support = sum(confusion[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    present = [c for c in per_class.values() if c["support"] > 0]  # macro over classes in the data
    n = len(y_true)
    return {
        "accuracy": sum(confusion[i][i] for i in range(k)) / n if n else 0.0,
        "macro_f1": sum(c["f1"] for c in present) / len(present) if present else 0.0,
        "n": n, "labels": labels, "per_class": per_class, "confusion": confusion,
    }


def checkpoint_seq_len(ckpt_dir: Path, model) -> int:
    """The sequence length the classifier was trained with (its training_args.json), else its position limit."""
    try:
        return int(json.loads((Path(ckpt_dir) / ARGS_FILE).read_text())["train"]["seq_len"])
    except (OSError, ValueError, KeyError, TypeError):
        return model.config.max_position_embeddings


def checkpoint_scrub_kinds(ckpt_dir: Path) -> tuple[str, ...]:
    """The PII kinds the classifier's training data was scrubbed of: inference must see the same placeholders."""
    try:
        return tuple(json.loads((Path(ckpt_dir) / ARGS_FILE).read_text()).get("scrub_pii") or ())
    except (OSError, ValueError, AttributeError):
        return ()


def scrubbed_texts(ckpt_dir: Path, records: list, also: bool = False) -> list[str]:
    """The records' texts, scrubbed as in training (and with the default kinds too when `also`, i.e. --scrub-pii)."""
    kinds = set(checkpoint_scrub_kinds(ckpt_dir)) | (set(DEFAULT_KINDS) if also else set())
    texts = [r.text for r in records]
    return scrub_all(texts, tuple(sorted(kinds)))[0] if kinds else texts


def evaluate(ckpt_dir: Path, data: Path, text_column: str = "text", label_column: str = "label",
             batch_size: int = 64, encoding: str = "utf-8", scrub_pii: bool = False) -> dict:
    model, tokenizer, meta = load_checkpoint(ckpt_dir, expect_kind="classifier")
    records = read_records(data, text_column, label_column, encoding=encoding)
    id2label = meta["id2label"]
    label2id = {label: i for i, label in id2label.items()}
    unseen = sorted({r.label for r in records} - set(label2id))
    if unseen:
        where = next(r.where for r in records if r.label in unseen)
        raise TinyLMError(f"label(s) {', '.join(map(repr, unseen))} (first at {where}) were never seen in training; "
                          f"the model knows {', '.join(id2label.values())}")
    probs = predict_proba(model, tokenizer, scrubbed_texts(ckpt_dir, records, scrub_pii),
                          checkpoint_seq_len(ckpt_dir, model), batch_size)
    y_pred = probs.argmax(-1).tolist()
    return classification_report([label2id[r.label] for r in records], y_pred, [id2label[i] for i in range(len(id2label))])


def predict(ckpt_dir: Path, data: Path, text_column: str = "text", id_column: str | None = None,
            batch_size: int = 64, encoding: str = "utf-8", scrub_pii: bool = False) -> list[dict]:
    """One row per input document, in input order: id (if asked), label, probabilities per class."""
    model, tokenizer, meta = load_checkpoint(ckpt_dir, expect_kind="classifier")
    records = read_records(data, text_column, id_column=id_column, encoding=encoding)
    probs = predict_proba(model, tokenizer, scrubbed_texts(ckpt_dir, records, scrub_pii),
                          checkpoint_seq_len(ckpt_dir, model), batch_size)
    labels = [meta["id2label"][i] for i in range(len(meta["id2label"]))]
    rows = []
    for record, p in zip(records, probs.tolist()):
        row = {"id": record.id} if id_column else {}
        row["label"] = labels[max(range(len(p)), key=p.__getitem__)]
        row["probabilities"] = {label: round(v, 6) for label, v in zip(labels, p)}
        rows.append(row)
    return rows

"""Evaluation and batched prediction: classification metrics (accuracy, macro-F1, per class, confusion),
per-document predictions, and masked-token accuracy / perplexity of a base (MLM) checkpoint."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from tinylm.checkpoint import load_checkpoint, read_config
from tinylm.devices import autocast, resolve_device, resolve_precision
from tinylm.config import LongDocs
from tinylm.data import encode_for_classification, mean_over_windows, pack_documents, pad_batch, read_records, read_texts
from tinylm.errors import TinyLMError
from tinylm.labels import (MULTI_LABEL, SEPARATOR, SINGLE_LABEL, LabelScheme, multi_hot, multi_label_decisions,
                           probabilities, single_label_decisions, split_labels)
from tinylm.files import ARGS_FILE, read_json, write_json
from tinylm.masking import mask_rows, special_positions
from tinylm.pii import DEFAULT_KINDS, scrub_all
from tinylm.serving import OnnxClassifier, is_onnx_export, read_settings
from tinylm.tokenizer import PAD, special_ids

ERROR_COLUMNS = ["where", "text", "label", "predicted", "probability"]  # then one p_<label> column per class
MULTI_LABEL_ERROR_COLUMNS = ["where", "text", "labels", "predicted"]  # label sets; then p_<label> columns


def predict_proba(model, tokenizer: Tokenizer, texts: list[str], seq_len: int, batch_size: int = 64,
                  device: torch.device | None = None, long_docs: str = "truncate",
                  precision: str = "fp32") -> torch.Tensor:
    """Class probabilities (N, num_labels) in input order: softmax, or a sigmoid per label for a multi-label model.
    Sorting by length keeps padding per batch small.

    long_docs="windows": a document longer than seq_len is read in consecutive windows whose class
    probabilities are averaged (multi-label too: every window was trained on the document's whole label set, and
    the mean does not let one stray window add a label, as the max would). precision: fp32, or bf16 (autocast;
    for hardware that runs it natively).
    """
    device = device or torch.device("cpu")
    model.to(device).eval()
    sequences, owners = encode_for_classification(tokenizer, texts, seq_len, long_docs)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    probs = torch.empty(len(sequences), model.num_labels)  # a normal tensor: callers may edit it in place
    pad_id = tokenizer.token_to_id(PAD)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        input_ids, attention_mask = pad_batch([sequences[i] for i in chunk], pad_id)
        with torch.inference_mode(), autocast(precision, device):
            logits = model(input_ids.to(device), attention_mask.to(device))
            probs[chunk] = probabilities(logits, getattr(model, "problem_type", SINGLE_LABEL)).cpu()
    if long_docs == "windows":
        probs = torch.from_numpy(mean_over_windows(probs.numpy(), owners, len(texts)))
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


def multi_label_report(truth, predicted, labels: list[str]) -> dict:
    """Multi-label figures from 0/1 arrays (N, labels): micro-F1 (over all document-label pairs), macro-F1 (the mean
    over labels present in the data), samples-F1 (the mean over documents; a document with no label, rightly
    given none, scores 1), subset accuracy (the share of documents whose predicted set is exactly right), and
    per label precision, recall, F1 and support."""
    truth, predicted = np.asarray(truth).astype(bool), np.asarray(predicted).astype(bool)
    tp, fp, fn = (truth & predicted).sum(0), (~truth & predicted).sum(0), (truth & ~predicted).sum(0)

    def f1(tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0

    per_class = {}
    for k, label in enumerate(labels):
        per_class[label] = {"precision": float(tp[k] / (tp[k] + fp[k])) if tp[k] + fp[k] else 0.0,
                            "recall": float(tp[k] / (tp[k] + fn[k])) if tp[k] + fn[k] else 0.0,
                            "f1": float(f1(tp[k], fp[k], fn[k])), "support": int(tp[k] + fn[k])}
    present = [c["f1"] for c in per_class.values() if c["support"] > 0]
    doc_tp, doc_wrong = (truth & predicted).sum(1), (truth ^ predicted).sum(1)
    samples = np.where(2 * doc_tp + doc_wrong > 0, 2 * doc_tp / np.maximum(2 * doc_tp + doc_wrong, 1), 1.0)
    n = len(truth)
    return {"problem_type": MULTI_LABEL, "micro_f1": float(f1(tp.sum(), fp.sum(), fn.sum())),
            "macro_f1": sum(present) / len(present) if present else 0.0,
            "samples_f1": float(samples.mean()) if n else 0.0,
            "subset_accuracy": float((doc_wrong == 0).mean()) if n else 0.0,
            "n": n, "labels": labels, "per_class": per_class}


def checkpoint_seq_len(ckpt_dir: Path, model) -> int:
    """The sequence length the checkpoint was trained with (its training_args.json), else its position limit."""
    limit = model.config.max_position_embeddings
    try:
        return min(int(read_json(Path(ckpt_dir) / ARGS_FILE, default={})["train"]["seq_len"]), limit)
    except (ValueError, KeyError, TypeError):
        return limit


def checkpoint_long_docs(ckpt_dir: Path) -> str:
    """How the classifier read documents longer than its sequence length in training: truncate or windows."""
    try:
        mode = read_json(Path(ckpt_dir) / ARGS_FILE, default={})["train"].get("long_docs", "truncate")
    except (KeyError, TypeError, AttributeError):
        return "truncate"
    return mode if mode in LongDocs.values() else LongDocs.truncate.value


def checkpoint_scrub_kinds(ckpt_dir: Path) -> tuple[str, ...]:
    """The PII kinds the checkpoint's training data was scrubbed of: inference must see the same placeholders."""
    return tuple(read_json(Path(ckpt_dir) / ARGS_FILE, default={}).get("scrub_pii") or ())


def scrubbed(texts: list[str], kinds: tuple[str, ...], also: bool = False) -> list[str]:
    """The texts scrubbed of the PII kinds the model's training data was scrubbed of (and of the default kinds
    too when `also`, i.e. --scrub-pii): inference must see the same placeholders."""
    kinds = set(kinds) | (set(DEFAULT_KINDS) if also else set())
    return scrub_all(texts, tuple(sorted(kinds)))[0] if kinds else texts


@dataclass
class Classifier:
    """What predict and eval need of a classifier, whichever runtime runs it: its labels and how it decides
    (scheme), the PII kinds its training data was scrubbed of, and probabilities(texts, batch_size) -> (N, labels)."""
    scheme: LabelScheme
    scrub_kinds: tuple[str, ...]
    probabilities: Callable[[list[str], int], np.ndarray]


def load_classifier(folder: Path, device: str = "cpu", precision: str = "fp32") -> Classifier:
    """A classifier checkpoint run by PyTorch, or an ONNX export (serving.py) run by ONNX Runtime on the CPU."""
    if is_onnx_export(folder):
        if device not in ("auto", "cpu") or precision not in ("auto", "fp32"):
            raise TinyLMError(f"{folder} is an ONNX export, which runs on the CPU at the precision it was exported "
                              "with; leave out --device and --precision")
        onnx = OnnxClassifier(folder)
        return Classifier(LabelScheme.from_meta(onnx.meta), onnx.scrub_kinds, onnx.probabilities)
    model, tokenizer, meta = load_checkpoint(folder, expect_kind="classifier")
    dev = resolve_device(device)
    run = partial(predict_proba, model, tokenizer, seq_len=checkpoint_seq_len(folder, model), device=dev,
                  long_docs=checkpoint_long_docs(folder), precision=resolve_precision(precision, dev))
    return Classifier(LabelScheme.from_meta(meta), checkpoint_scrub_kinds(folder),
                      lambda texts, batch_size: run(texts, batch_size=batch_size).numpy())


def evaluate_predictions(ckpt_dir: Path, data: Path, text_column: str = "text", label_column: str = "label",
                         batch_size: int = 64, encoding: str = "utf-8", scrub_pii: bool = False, device: str = "cpu",
                         precision: str = "fp32") -> tuple[dict, list[dict]]:
    """The classification report and one row per document, in input order: where (file:line), text (as the model
    saw it, i.e. scrubbed where the classifier scrubs), label, predicted, probability, probabilities.
    ckpt_dir: a classifier checkpoint or its ONNX export. device: cpu, cuda or auto; precision: fp32, bf16 or auto
    (bf16 where the hardware runs it natively)."""
    classifier = load_classifier(ckpt_dir, device, precision)
    scheme = classifier.scheme
    records = read_records(data, text_column, label_column, encoding=encoding, empty_labels=scheme.multi_label)
    truth = [split_labels(r.label, scheme.separator) if scheme.multi_label else [r.label] for r in records]
    check_known_labels(records, truth, scheme, ckpt_dir)
    texts = scrubbed([r.text for r in records], classifier.scrub_kinds, scrub_pii)
    probs = torch.from_numpy(classifier.probabilities(texts, batch_size))
    predictions = scheme.rows(probs)
    label2id = {label: i for i, label in enumerate(scheme.labels)}
    if scheme.multi_label:
        report = multi_label_report(multi_hot(truth, label2id), multi_label_decisions(probs, scheme.thresholds).numpy(),
                                    scheme.labels)
        report["thresholds"] = dict(zip(scheme.labels, scheme.thresholds))
        return report, [{"where": r.where, "text": text, "labels": names, "predicted": p["labels"],
                         "probabilities": p["probabilities"]}
                        for r, text, names, p in zip(records, texts, truth, predictions)]
    report = classification_report([label2id[r.label] for r in records], single_label_decisions(probs).tolist(),
                                   scheme.labels)
    return report, [{"where": r.where, "text": text, "label": r.label, "predicted": p["label"],
                     "probability": p["probability"], "probabilities": p["probabilities"]}
                    for r, text, p in zip(records, texts, predictions)]


def label_separator(folder: Path) -> str:
    """The separator a multi-label classifier (checkpoint or ONNX export) joins label sets with in CSV files."""
    meta = read_settings(folder) if is_onnx_export(folder) else read_config(folder)[1]
    return meta.get("label_separator", SEPARATOR)


def check_known_labels(records: list, truth: list[list[str]], scheme: LabelScheme, ckpt_dir: Path):
    """Every label in the data is one the classifier knows; label cells holding several joined labels given to a
    single-label classifier are named as such."""
    known = set(scheme.labels)
    unseen = sorted({name for names in truth for name in names} - known)
    if not unseen:
        return
    where = next(r.where for r, names in zip(records, truth) if set(names) - known)
    if not scheme.multi_label:
        joined = next((label for label in unseen if SEPARATOR in label and set(split_labels(label)) <= known), None)
        if joined is not None:
            raise TinyLMError(f"label {joined!r} (first at {where}) holds several labels joined by '{SEPARATOR}', but "
                              f"{ckpt_dir} is a single-label classifier; fine-tune with --multi-label for such data")
    raise TinyLMError(f"label(s) {', '.join(map(repr, unseen))} (first at {where}) were never seen in training; "
                      f"the model knows {', '.join(scheme.labels)}")


def predict(ckpt_dir: Path, data: Path, text_column: str = "text", id_column: str | None = None,
            batch_size: int = 64, encoding: str = "utf-8", scrub_pii: bool = False, device: str = "cpu",
            precision: str = "fp32") -> list[dict]:
    """One row per input document, in input order: id (if asked), label (or labels, multi-label), probabilities per
    class. ckpt_dir: a classifier checkpoint or its ONNX export."""
    classifier = load_classifier(ckpt_dir, device, precision)
    records = read_records(data, text_column, id_column=id_column, encoding=encoding)
    texts = scrubbed([r.text for r in records], classifier.scrub_kinds, scrub_pii)
    probs = torch.from_numpy(classifier.probabilities(texts, batch_size))
    answer = "labels" if classifier.scheme.multi_label else "label"
    return [{**({"id": record.id} if id_column else {}), answer: p[answer], "probabilities": p["probabilities"]}
            for record, p in zip(records, classifier.scheme.rows(probs))]


def evaluate_checkpoint(ckpt_dir: Path, data: Path, text_column: str = "text", label_column: str = "label",
                        batch_size: int = 64, encoding: str = "utf-8", seed: int | None = None, device: str = "auto",
                        precision: str = "auto", errors_file: Path | None = None,
                        out_file: Path | None = None) -> tuple[dict, int | None]:
    """`tinylm eval`: a classifier's report (and its misclassified documents in errors_file), or a base's masked-token
    figures (masked from `seed`, 0 unless given); the report also goes to out_file. Returns (report, the number of
    documents in errors_file, if any)."""
    check_suffix(out_file, (".json",), "--out")
    check_suffix(errors_file, (".jsonl", ".csv"), "--errors")
    n_errors = None
    if not is_onnx_export(ckpt_dir) and read_config(ckpt_dir)[1]["kind"] == "mlm":
        if errors_file is not None:
            raise TinyLMError(f"--errors lists misclassified documents, but {ckpt_dir} is a base (MLM) checkpoint; "
                              "give a classifier from `tinylm finetune`")
        report = evaluate_mlm(ckpt_dir, data, text_column, batch_size, encoding, seed or 0, device=device)
    else:
        if seed is not None:
            raise TinyLMError("--seed is for base (MLM) checkpoints, whose evaluation masks tokens at random; "
                              f"{ckpt_dir} is a classifier, evaluated deterministically")
        report, rows = evaluate_predictions(ckpt_dir, data, text_column, label_column, batch_size, encoding,
                                            device=device, precision=precision)
        if errors_file is not None:
            multi = report.get("problem_type") == MULTI_LABEL
            errors = [row for row in rows if row["predicted"] != row["labels" if multi else "label"]]
            write_rows(errors_file, errors, MULTI_LABEL_ERROR_COLUMNS if multi else ERROR_COLUMNS, report["labels"],
                       label_separator(ckpt_dir))
            n_errors = len(errors)
    if out_file is not None:
        write_report(out_file, report)
    return report, n_errors


# ---- base (MLM) checkpoints: how well the model fills in masked tokens -----------------------------------------

def mlm_metrics(model, tokenizer: Tokenizer, texts: list[str], seq_len: int, mlm_probability: float = 0.15,
                seed: int = 0, batch_size: int = 64, device: torch.device | None = None) -> dict:
    """n_tokens predicted, masked-token accuracy, mean cross-entropy and perplexity = exp(cross-entropy) of
    `texts`, packed as in pretraining (see masked_lm_metrics)."""
    input_ids = torch.from_numpy(pack_documents(tokenizer, texts, seq_len))
    ids = special_ids(tokenizer)
    metrics = masked_lm_metrics(model, input_ids, ids, tokenizer.get_vocab_size(), mlm_probability, seed,
                                batch_size, device)
    if metrics is None:
        regular = int((~special_positions(input_ids, ids)).sum())
        raise TinyLMError(f"no token was masked in {len(texts)} document(s) of {regular} token(s); "
                          "give more text, or another --seed")
    return metrics


def masked_lm_metrics(model, input_ids: torch.Tensor, ids: dict[str, int], vocab_size: int, mlm_probability: float,
                      seed: int = 0, batch_size: int = 64, device: torch.device | None = None) -> dict | None:
    """Masked-token figures of packed rows (None if no token was masked). The rows are masked once, all
    together, with a generator seeded by `seed`: the figures do not depend on batch size, and two checkpoints
    sharing a tokenizer and sequence length are asked to fill in the same blanks. Leaves the model in eval mode."""
    device = device or torch.device("cpu")
    model.to(device).eval()
    # only the last row has padding; full rows drop the mask
    inputs, attention_mask, labels = mask_rows(input_ids, ids, vocab_size, mlm_probability,
                                               torch.Generator().manual_seed(seed))
    n_tokens, correct, total_ce = 0, 0, 0.0
    for start in range(0, len(inputs), batch_size):
        targets = labels[start:start + batch_size].to(device)
        if not (targets != -100).any():
            continue
        with torch.inference_mode():
            _, logits = model(inputs[start:start + batch_size].to(device),
                              attention_mask[start:start + batch_size].to(device), labels=targets)
            targets = targets[targets != -100]  # the order of the head's logits (masked positions, row by row)
            total_ce += F.cross_entropy(logits.float(), targets, reduction="sum").item()
            correct += int((logits.argmax(-1) == targets).sum())
        n_tokens += targets.numel()
    if not n_tokens:
        return None
    cross_entropy = total_ce / n_tokens
    return {"n_tokens": n_tokens, "accuracy": correct / n_tokens, "cross_entropy": cross_entropy,
            "perplexity": math.exp(cross_entropy)}


def evaluate_mlm(ckpt_dir: Path, data: Path, text_column: str = "text", batch_size: int = 64,
                 encoding: str = "utf-8", seed: int = 0, mlm_probability: float | None = None,
                 device: str = "cpu") -> dict:
    """Masked-token accuracy and perplexity of a base checkpoint on held-out text, masked as in its pretraining
    (its sequence length and mlm_probability, 15% if unrecorded) but deterministically, from `seed`."""
    model, tokenizer, _ = load_checkpoint(ckpt_dir, expect_kind="mlm")
    texts = scrubbed(read_texts(data, text_column, encoding), checkpoint_scrub_kinds(ckpt_dir))
    if mlm_probability is None:
        recorded = read_json(Path(ckpt_dir) / ARGS_FILE, default={}).get("train")
        mlm_probability = recorded.get("mlm_probability", 0.15) if isinstance(recorded, dict) else 0.15
    if not isinstance(mlm_probability, (int, float)) or not 0 < mlm_probability < 1:
        raise TinyLMError(f"mlm_probability must be in (0, 1), got {mlm_probability!r}")
    seq_len = checkpoint_seq_len(ckpt_dir, model)
    metrics = mlm_metrics(model, tokenizer, texts, seq_len, mlm_probability, seed, batch_size, resolve_device(device))
    return {"kind": "mlm", **metrics, "n_documents": len(texts), "seq_len": seq_len,
            "mlm_probability": mlm_probability, "seed": seed}


# ---- output files ---------------------------------------------------------------------------------------------

def check_suffix(path: Path | None, suffixes: tuple[str, ...], flag: str):
    """Refuse an output file name whose suffix says another format, before any work is done."""
    if path is not None and path.suffix.lower() not in suffixes:
        raise TinyLMError(f"{flag} {path}: use a {' or '.join(suffixes)} file name")


def write_rows(path: Path, rows: list[dict], columns: list[str], labels: list[str], separator: str = SEPARATOR):
    """JSONL (one object a line) or CSV (by suffix): `columns`, then each row's probabilities as p_<label>. In CSV
    a list of labels is one cell, the names joined by `separator`."""
    try:
        with open(path, "w", encoding="utf-8", newline="") as f:
            if path.suffix.lower() == ".jsonl":
                f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
                return
            writer = csv.writer(f)
            writer.writerow([*columns, *(f"p_{label}" for label in labels)])
            for row in rows:
                cells = [separator.join(row[c]) if isinstance(row[c], list) else row[c] for c in columns]
                writer.writerow([*cells, *(row["probabilities"][label] for label in labels)])
    except OSError as e:
        raise TinyLMError(f"cannot write {path}: {e.strerror}") from None


def write_report(path: Path, report: dict):
    try:
        write_json(path, report)
    except OSError as e:
        raise TinyLMError(f"cannot write {path}: {e.strerror}") from None

"""Checkpoint folders: model.safetensors + config.json + tokenizer.json + training_args.json. Never a pickle.

A base checkpoint (kind "mlm") holds a BertForMaskedLM; a classifier checkpoint (kind "classifier") holds a
BertForSequenceClassification and its id2label. config.json uses BertConfig's names, so the folder also reads
as a Hugging Face config.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, fields
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer

from tinylm import __version__
from tinylm.config import BertConfig, from_dict
from tinylm.errors import TinyLMError
from tinylm.labels import PROBLEM_TYPES, SEPARATOR, SINGLE_LABEL
from tinylm.files import (ARGS_FILE, CHECKPOINTS, CONFIG_FILE, METRICS_FILE, PROVENANCE_FILE, RUN_CONFIG,
                          SELF_TRAINING_FILE, TOKENIZER_FILE, WEIGHTS_FILE, read_json, write_json)
from tinylm.model import POOLINGS, BertForMaskedLM, BertForSequenceClassification
from tinylm.tokenizer import load_tokenizer

CARRIED = (METRICS_FILE, CHECKPOINTS, RUN_CONFIG, SELF_TRAINING_FILE)  # kept across saves of a model folder
KINDS = {"mlm": "BertForMaskedLM", "classifier": "BertForSequenceClassification"}
# safetensors refuses tensors that share memory; these are tied to another key and re-tied on load.
TIED_KEYS = ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


def model_kind(model) -> str:
    return "classifier" if isinstance(model, BertForSequenceClassification) else "mlm"


def _fsync_dir(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(out_dir: Path, model, tokenizer: Tokenizer, training_args: dict,
                    id2label: dict[int, str] | None = None, provenance: dict | None = None,
                    label_fields: dict | None = None) -> Path:
    """Write the folder atomically: build it beside out_dir, fsync, then swap it in with renames.

    label_fields: what a multi-label classifier adds to config.json (LabelScheme.config_fields()).

    Run files already in out_dir (metrics.jsonl) are carried over. A crash at any point leaves either the
    previous complete folder or the new one (as out_dir, or as its .old / .tmp sibling), never a torn one.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TinyLMError(f"--out {out_dir} is a file; give a folder path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: save the module's own names
    kind = model_kind(model)
    save_weights(stored_state(model), tmp / WEIGHTS_FILE, {"format": "pt", "tinylm_kind": kind})
    config = {"model_type": "bert", "architectures": [KINDS[kind]], **asdict(model.config),
              "kind": kind, "tinylm_version": __version__}
    if id2label is not None:
        config["id2label"] = {str(i): label for i, label in id2label.items()}
        config["label2id"] = {label: i for i, label in id2label.items()}
        config["num_labels"] = len(id2label)
        config["classifier_pooling"] = model.pooling
        config.update(label_fields or {})
    write_json(tmp / CONFIG_FILE, config)
    write_json(tmp / ARGS_FILE, training_args)
    tokenizer.save(str(tmp / TOKENIZER_FILE))
    if provenance is not None:  # inside the temp folder, so the manifest is part of the atomic write
        write_json(tmp / PROVENANCE_FILE, provenance)
    for name in CARRIED:  # the run's log and resumable checkpoints live on in the new folder
        if (out_dir / name).exists():
            link_tree(out_dir / name, tmp / name)
    commit_dir(tmp, out_dir)
    return out_dir


def save_weights(tensors: dict, path: Path, metadata: dict[str, str]):
    """safetensors' save_file, with the header's metadata in sorted order. safetensors writes the metadata in
    hash-map order, which changes from one call to the next, and the same weights should make the same file, byte
    for byte (a checksum then says whether two runs agree)."""
    save_file(tensors, str(path), metadata=metadata)
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        ordered = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if len(ordered) <= size:  # the same keys and values: the same length, padded with spaces as safetensors pads
            f.seek(8)
            f.write(ordered.ljust(size))


def stored_state(model) -> dict:
    """What a weights file holds: the state dict on the CPU, without the tied decoder (re-tied on load)."""
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in TIED_KEYS}


def link_tree(src: Path, dst: Path):
    """Hard-link a file or folder tree (no data copied, both names stay valid); copy where links fail."""
    if src.is_dir():
        dst.mkdir()
        for child in src.iterdir():
            link_tree(child, dst / child.name)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def commit_dir(tmp: Path, out_dir: Path):
    """fsync the finished tmp folder, then swap it in with renames: a crash leaves the old folder or the new one
    (as out_dir, or as its .old / .tmp sibling), never a torn one."""
    for f in tmp.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(tmp)
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    _fsync_dir(out_dir.parent)
    shutil.rmtree(old, ignore_errors=True)


def check_out_dir(out_dir: Path, overwrite: bool, flag: str = ""):
    """Refuse an output path that is a file, or a non-empty folder unless overwrite; flag names it ("--out ")."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TinyLMError(f"{flag}{out_dir} is a file; give a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise TinyLMError(f"{flag}{out_dir} already exists and is not empty; pass --overwrite to replace it")


def read_config(ckpt_dir: Path) -> tuple[BertConfig, dict]:
    """Parse and validate config.json; returns (model config, the tinylm fields: kind, id2label, ...)."""
    path = Path(ckpt_dir) / CONFIG_FILE
    if not Path(ckpt_dir).is_dir():
        raise TinyLMError(f"checkpoint folder {ckpt_dir} does not exist")
    if not path.is_file():
        raise TinyLMError(f"{ckpt_dir} is not a tinylm checkpoint: it has no {CONFIG_FILE}")
    data = read_json(path)
    if "kind" not in data and "architectures" in data:
        raise TinyLMError(f"{ckpt_dir} is a transformers model folder (such as `tinylm export --format hf` writes), "
                          f"not a tinylm checkpoint: bring it in with `tinylm import {ckpt_dir} OUT`")
    model_keys = {f.name for f in fields(BertConfig)}
    missing = sorted(model_keys - set(data))
    if missing:
        raise TinyLMError(f"{path} lacks {', '.join(missing)}")
    config = from_dict(BertConfig, {k: data[k] for k in model_keys}, str(path)).validate(str(path))
    meta = {k: v for k, v in data.items() if k not in model_keys}
    if meta.get("kind") not in KINDS:
        raise TinyLMError(f"{path}: 'kind' must be one of {', '.join(KINDS)}, got {meta.get('kind')!r}")
    if meta["kind"] == "classifier":
        id2label = meta.get("id2label")
        if not isinstance(id2label, dict) or not id2label:
            raise TinyLMError(f"{path}: a classifier checkpoint needs a non-empty id2label")
        try:
            meta["id2label"] = {int(i): str(label) for i, label in id2label.items()}
        except ValueError:
            raise TinyLMError(f"{path}: id2label keys must be integers") from None
        if sorted(meta["id2label"]) != list(range(len(id2label))):
            raise TinyLMError(f"{path}: id2label keys must be 0..{len(id2label) - 1}")
        meta.setdefault("classifier_pooling", "cls")
        if meta["classifier_pooling"] not in POOLINGS:
            raise TinyLMError(f"{path}: classifier_pooling must be one of {', '.join(POOLINGS)}")
        check_label_fields(meta, path)
    return config, meta


def check_label_fields(meta: dict, path: Path):
    """A multi-label classifier's config.json: problem_type, a threshold in (0, 1) for every label, a separator."""
    problem_type = meta.get("problem_type", SINGLE_LABEL)
    if problem_type not in PROBLEM_TYPES:
        raise TinyLMError(f"{path}: problem_type must be one of {', '.join(PROBLEM_TYPES)}, got {problem_type!r}")
    if problem_type == SINGLE_LABEL:
        return
    thresholds, labels = meta.get("thresholds"), list(meta["id2label"].values())
    if not isinstance(thresholds, dict) or set(thresholds) != set(labels) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1 for t in thresholds.values()):
        raise TinyLMError(f"{path}: a multi-label classifier needs 'thresholds', one number in (0, 1) per label")
    if not isinstance(meta.get("label_separator", SEPARATOR), str) or not meta.get("label_separator", SEPARATOR):
        raise TinyLMError(f"{path}: label_separator must be a non-empty string")


def load_checkpoint(ckpt_dir: Path, expect_kind: str | None = None):
    """Load (model, tokenizer, meta), checking the kind, every tensor and the tokenizer against the config."""
    ckpt_dir = Path(ckpt_dir)
    config, meta = read_config(ckpt_dir)
    kind = meta["kind"]
    if expect_kind is not None and kind != expect_kind:
        wanted = {"mlm": "a base (pretrained) checkpoint from `tinylm pretrain`",
                  "classifier": "a classifier checkpoint from `tinylm finetune`"}[expect_kind]
        found = {"mlm": "base (MLM)", "classifier": "classifier"}[kind]
        raise TinyLMError(f"{ckpt_dir} is a {found} checkpoint, but this command needs {wanted}")
    if kind == "mlm":
        model = BertForMaskedLM(config)
    else:
        model = BertForSequenceClassification(config, len(meta["id2label"]), meta["classifier_pooling"],
                                              meta.get("problem_type", SINGLE_LABEL))
    load_weights(model, ckpt_dir / WEIGHTS_FILE)

    tokenizer = load_tokenizer(ckpt_dir)
    if tokenizer.get_vocab_size() != config.vocab_size:
        raise TinyLMError(f"tokenizer in {ckpt_dir} has {tokenizer.get_vocab_size()} tokens but the model expects "
                          f"vocab_size {config.vocab_size}: the two do not belong together")
    return model, tokenizer, meta


def load_weights(model, path: Path):
    """Load safetensors weights after checking every name, shape and dtype against the model."""
    tensors = read_tensors(path)
    expected = {k: v for k, v in model.state_dict().items() if k not in TIED_KEYS}
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected) - set(TIED_KEYS))
    if missing or unexpected:
        raise TinyLMError(f"{path} does not match config.json: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, ref in expected.items():
        tensor = tensors[name]
        if tensor.shape != ref.shape or tensor.dtype != ref.dtype:
            raise TinyLMError(f"{path}: {name} has shape {tuple(tensor.shape)} {tensor.dtype}, "
                              f"config.json implies {tuple(ref.shape)} {ref.dtype}")
    model.load_state_dict({name: tensors[name] for name in expected}, strict=False)
    if isinstance(model, BertForMaskedLM):
        model.tie_weights()


def read_tensors(path: Path) -> dict:
    """Every tensor of a safetensors file, or a one-line error: missing, or corrupt / not safetensors."""
    if not Path(path).is_file():
        raise TinyLMError(f"{path} is missing; the checkpoint is incomplete")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise TinyLMError(f"{path} is corrupt or not a safetensors file ({str(e)[:120]})") from None

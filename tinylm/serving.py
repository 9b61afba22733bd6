"""Serving an ONNX export (onnx_export.py) with ONNX Runtime and the tokenizer: the deployment path of a CPU server.

The documents are read as the checkpoint reads them in `tinylm predict`: the same tokenization, truncation or
windows, batches sorted by length and padded to their longest, probabilities averaged over a document's windows.
Nothing here runs PyTorch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from tinylm.config import LongDocs
from tinylm.data import encode_for_classification, mean_over_windows, pad_sequences
from tinylm.errors import TinyLMError
from tinylm.files import CONFIG_FILE, ONNX_FILE, ONNX_SETTINGS, TOKENIZER_FILE, read_json
from tinylm.tokenizer import load_tokenizer

FORMAT = "tinylm-onnx"
INSTALL_HINT = "pip install 'tinylm[onnx]' (or: pip install onnxruntime)"


def is_onnx_export(folder: Path) -> bool:
    return (Path(folder) / ONNX_SETTINGS).is_file()


class OnnxClassifier:
    """A classifier export, loaded: labels, the settings it was trained with, and probabilities(texts)."""

    def __init__(self, folder: Path, threads: int | None = None):
        folder = Path(folder)
        settings = read_settings(folder)
        if settings["kind"] != "classifier":
            raise TinyLMError(f"{folder} is an ONNX export of a base (MLM) model; predict and eval need a classifier "
                              "export (`tinylm export CLASSIFIER OUT --format onnx`)")
        if not (folder / TOKENIZER_FILE).is_file():
            raise TinyLMError(f"{folder} has no {TOKENIZER_FILE}: the export is incomplete; export it again with "
                              "`tinylm export CKPT OUT --format onnx --overwrite`")
        self.folder = folder
        self.tokenizer = load_tokenizer(folder)
        self.session = inference_session(folder / ONNX_FILE, threads)
        self.labels = [settings["id2label"][str(i)] for i in range(len(settings["id2label"]))]
        # what labels.LabelScheme.from_meta reads: the same fields as a checkpoint's config.json
        self.meta = {"id2label": dict(enumerate(self.labels)),
                     **{k: settings[k] for k in ("problem_type", "thresholds", "label_separator") if k in settings}}
        self.seq_len = int(settings["seq_len"])
        self.long_docs = settings.get("long_docs", LongDocs.truncate.value)
        self.scrub_kinds = tuple(settings.get("scrub_pii") or ())
        self.pad_id = int(settings["pad_token_id"])
        self.precision = settings.get("precision", "fp32")

    def probabilities(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(N, num_labels) float32 probabilities (softmax, or a sigmoid per label for multi-label), in input
        order."""
        sequences, owners = encode_for_classification(self.tokenizer, texts, self.seq_len, self.long_docs)
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        probs = np.empty((len(sequences), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            input_ids, attention_mask = pad_sequences([sequences[i] for i in chunk], self.pad_id)
            probs[chunk] = self.session.run(["probabilities"], {"input_ids": input_ids,
                                                                 "attention_mask": attention_mask})[0]
        if self.long_docs == LongDocs.windows.value:
            probs = mean_over_windows(probs, owners, len(texts))
        return probs


def read_settings(folder: Path) -> dict:
    """tinylm_onnx.json, checked: a folder that is not an ONNX export says what it is instead."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TinyLMError(f"{folder} does not exist or is not a folder")
    if not (folder / ONNX_SETTINGS).is_file():
        what = "a checkpoint or transformers export" if (folder / CONFIG_FILE).is_file() else "not an export folder"
        raise TinyLMError(f"{folder} is {what}, not an ONNX export: it has no {ONNX_SETTINGS}")
    settings = read_json(folder / ONNX_SETTINGS)
    if settings.get("format") != FORMAT or settings.get("kind") not in ("mlm", "classifier"):
        raise TinyLMError(f"{folder / ONNX_SETTINGS} is not a tinylm ONNX export's settings file")
    needed = ("seq_len", "pad_token_id") + (("id2label",) if settings["kind"] == "classifier" else ())
    missing = [key for key in needed if key not in settings]
    if missing:
        raise TinyLMError(f"{folder / ONNX_SETTINGS} lacks {', '.join(missing)}")
    return settings


def inference_session(path: Path, threads: int | None = None):
    if importlib.util.find_spec("onnxruntime") is None:
        raise TinyLMError(f"running an ONNX export needs ONNX Runtime, which is not installed: {INSTALL_HINT}")
    import onnxruntime

    if not path.is_file():
        raise TinyLMError(f"{path} is missing: the export is incomplete")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are not the user's concern
    if threads:
        options.intra_op_num_threads = threads
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for malformed or unsupported models
        raise TinyLMError(f"{path} is not a model ONNX Runtime can run ({str(e).splitlines()[0][:160]})") from None

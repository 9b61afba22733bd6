"""The files of tinylm's folders, named once, and JSON in and out of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinylm.errors import TinyLMError

TOKENIZER_FILE = "tokenizer.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"  # BertConfig's fields and tinylm's (kind, id2label, ...)
ARGS_FILE = "training_args.json"  # how the folder was trained: the stage, its data, its settings, its summary
METRICS_FILE = "metrics.jsonl"  # one JSON object per logged step or validation
PROVENANCE_FILE = "provenance.json"  # what the folder was built from (see provenance.py)
RUN_CONFIG = "config.toml"  # the run's effective configuration: `--config` reads it back to repeat the run
CHECKPOINTS = "checkpoints"  # resumable training state, see state.py
SELF_TRAINING_FILE = "self_training.json"  # a fine-tune with --unlabelled: its rounds (see self_training.py)
ONNX_FILE = "model.onnx"  # an ONNX export's graph and weights (see onnx_export.py)
ONNX_SETTINGS = "tinylm_onnx.json"  # what serving an ONNX export needs besides the graph: labels, seq_len, ...

_MISSING = object()


def read_json(path: Path, default: Any = _MISSING) -> dict:
    """A JSON file that must hold one object, or a one-line error naming it. With a default, a missing or
    unreadable file gives the default instead (for optional records such as training_args.json)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        if default is not _MISSING:
            return default
        if isinstance(e, OSError):
            raise TinyLMError(f"cannot read {path}: {e.strerror or e}") from None
        raise TinyLMError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        if default is not _MISSING:
            return default
        raise TinyLMError(f"{path} must hold a JSON object")
    return data


def write_json(path: Path, obj: Any):
    """Indented, UTF-8 as is (names and labels in any script), with a final newline."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")

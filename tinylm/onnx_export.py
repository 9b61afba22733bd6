"""ONNX export: a checkpoint as one model.onnx that ONNX Runtime runs on a CPU server, with or without PyTorch.

The folder is self-describing: model.onnx (inputs input_ids and attention_mask, int64, both (batch, sequence) with
dynamic sizes), tokenizer.json, and tinylm_onnx.json with what serving needs besides the graph: the labels, the
sequence length and long-document mode the classifier was trained with, the PII kinds its inputs are scrubbed of.
A classifier's graph returns logits and probabilities (batch, labels); a base's returns MLM logits
(batch, sequence, vocabulary).

The graph is traced with PyTorch's TorchScript exporter and saved as traced: ONNX Runtime applies its own graph
optimisations when a session loads it. Its offline BERT fusions (attention, skip-LayerNorm and bias-GELU as single
kernels) are not applied: on the 2-core CPU measured, the fused graph ran 5-10% slower in fp32 and its int8 10%
slower than the plain graph's (docs/performance.md#serving). int8 quantises the weights of the linear layers
(dynamic quantisation: activations are quantised per batch at run time).
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from tinylm import __version__
from tinylm.checkpoint import check_out_dir, commit_dir, load_checkpoint, model_kind
from tinylm.errors import TinyLMError
from tinylm.evaluate import checkpoint_long_docs, checkpoint_scrub_kinds, checkpoint_seq_len
from tinylm.files import ONNX_FILE, ONNX_SETTINGS, PROVENANCE_FILE, TOKENIZER_FILE, write_json
from tinylm.hf import export_manifest
from tinylm.labels import LabelScheme, probabilities
from tinylm.serving import FORMAT

OPSET = 17  # LayerNormalization is one op from 17 on; ONNX Runtime 1.14+ runs it
INSTALL_HINT = "pip install 'tinylm[onnx]' (or: pip install onnx onnxruntime)"


class OnnxGraph(nn.Module):
    """The model as the exported graph sees it: token ids and mask in, logits (and probabilities: softmax, or a
    sigmoid per label for a multi-label classifier) out."""

    def __init__(self, model, problem_type: str | None = None):
        super().__init__()
        self.model = model
        self.problem_type = problem_type

    def forward(self, input_ids, attention_mask):
        logits = self.model(input_ids, attention_mask)
        if self.problem_type is None:
            return logits
        return logits, probabilities(logits, self.problem_type)


def require_onnx():
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise TinyLMError(f"the ONNX export needs {' and '.join(missing)}, which is not installed: {INSTALL_HINT}")


def export_onnx(ckpt_dir: Path, out_dir: Path, overwrite: bool = False, int8: bool = False) -> dict:
    """Write ckpt_dir as an ONNX export folder (see the module's docstring). Returns a summary."""
    require_onnx()
    model, tokenizer, meta = load_checkpoint(ckpt_dir)
    kind = model_kind(model)
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    scheme = LabelScheme.from_meta(meta) if kind == "classifier" else None
    trace_graph(model.eval(), tmp / ONNX_FILE, scheme)
    if int8:
        quantize_int8(tmp / ONNX_FILE)
    settings = {"format": FORMAT, "kind": kind, "precision": "int8" if int8 else "fp32", "opset": OPSET,
                "inputs": ["input_ids", "attention_mask"],
                "outputs": ["logits"] if kind == "mlm" else ["logits", "probabilities"],
                "seq_len": checkpoint_seq_len(ckpt_dir, model), "pad_token_id": model.config.pad_token_id,
                "scrub_pii": list(checkpoint_scrub_kinds(ckpt_dir)), "tinylm_version": __version__}
    if kind == "classifier":
        settings.update({"id2label": {str(i): label for i, label in meta["id2label"].items()},
                         "pooling": model.pooling, "long_docs": checkpoint_long_docs(ckpt_dir),
                         "problem_type": scheme.problem_type, **scheme.config_fields()})
    write_json(tmp / ONNX_SETTINGS, settings)
    tokenizer.save(str(tmp / TOKENIZER_FILE))
    write_json(tmp / PROVENANCE_FILE, export_manifest(ckpt_dir, "onnx"))
    commit_dir(tmp, out_dir)
    return {"kind": kind, "precision": settings["precision"], "out_dir": str(out_dir),
            "files": sorted(p.name for p in out_dir.iterdir())}


def trace_graph(model, path: Path, scheme: LabelScheme | None):
    """Trace the model on a small padded batch; batch and sequence sizes stay dynamic in the graph.
    scheme: a classifier's labels (its problem type decides softmax or sigmoid); None for a base."""
    input_ids = torch.full((2, 8), model.config.pad_token_id, dtype=torch.long)
    input_ids[:, :6] = 5 % model.config.vocab_size
    attention_mask = (input_ids != model.config.pad_token_id).long()
    outputs = ["logits"] if scheme is None else ["logits", "probabilities"]
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch", 1: "sequence"} if scheme is None else {0: "batch"}, "probabilities": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; see the module docstring
        torch.onnx.export(OnnxGraph(model, scheme and scheme.problem_type), (input_ids, attention_mask), str(path),
                          input_names=["input_ids", "attention_mask"], output_names=outputs,
                          dynamic_axes={name: axes[name] for name in ("input_ids", "attention_mask", *outputs)},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)


def quantize_int8(path: Path):
    """Dynamic int8 quantisation of the linear layers' weights (activations quantised per batch at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path.with_name(f"{path.stem}.int8{path.suffix}")
    logging.disable(logging.WARNING)  # its advice to pre-process the model is for convolutional networks
    try:
        quantize_dynamic(str(path), str(quantized), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    quantized.replace(path)

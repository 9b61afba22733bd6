"""`tinylm export --format onnx` and serving the export: ONNX Runtime gives the checkpoint's probabilities (fp32) for
every pooling and for windows, `tinylm predict` / `eval` read the export folder, and the folder serves without PyTorch."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from test_errors import assert_one_line_error, run_cli
from test_hf_interop import real_texts, write_texts
from tinylm.checkpoint import load_checkpoint
from tinylm.config import FinetuneConfig, RunOptions
from tinylm.data import encode_documents, pad_batch
from tinylm.evaluate import evaluate_predictions, predict
from tinylm.finetune import finetune

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def classifiers(trained, tmp_path_factory) -> dict[str, Path]:
    """One classifier per pooling, and one that reads long documents in windows of 16 tokens."""
    root = tmp_path_factory.mktemp("onnx_classifiers")
    settings = {"cls": dict(pooling="cls"), "mean": dict(pooling="mean"), "max": dict(pooling="max"),
                "windows": dict(pooling="max", long_docs="windows", seq_len=16)}
    for name, extra in settings.items():
        finetune(trained / "train.csv", trained / "base", root / name,
                 FinetuneConfig.of(**{"epochs": 1, "batch_size": 8, "seq_len": 64, **extra}), run=RunOptions(quiet=True))
    return {name: root / name for name in settings}


def export(capsys, ckpt: Path, out: Path, *extra: str) -> Path:
    code, stdout, err = run_cli(capsys, "export", ckpt, out, "--format", "onnx", *extra)
    assert code in (0, None), err
    return out


def texts_file(tmp_path: Path) -> Path:
    """Real invoices cut to very different lengths, so batches are padded; some longer than a 16-token window."""
    return write_texts(tmp_path / "texts.csv", real_texts() * 3)


@pytest.mark.parametrize("name", ["cls", "mean", "max", "windows"])
def test_onnx_export_predicts_what_the_checkpoint_predicts(name, classifiers, tmp_path, capsys):
    onnx_dir = export(capsys, classifiers[name], tmp_path / "onnx")
    assert {p.name for p in onnx_dir.iterdir()} >= {"model.onnx", "tokenizer.json", "tinylm_onnx.json"}
    settings = json.loads((onnx_dir / "tinylm_onnx.json").read_text())
    assert settings["kind"] == "classifier" and settings["precision"] == "fp32"
    assert settings["long_docs"] == ("windows" if name == "windows" else "truncate")
    data = texts_file(tmp_path)
    # batch size 4: several batches of different widths, each padded to its longest document
    ours = predict(classifiers[name], data, batch_size=4, precision="fp32")
    theirs = predict(onnx_dir, data, batch_size=4)
    diff = max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in zip(ours, theirs) for k in a["probabilities"])
    print(f"max |probability difference| ONNX Runtime vs tinylm, {name}: {diff:.2g}")
    assert diff < TOLERANCE
    assert [r["label"] for r in ours] == [r["label"] for r in theirs]


def test_onnx_eval_and_predict_through_the_cli(classifiers, trained, tmp_path, capsys):
    onnx_dir = export(capsys, classifiers["max"], tmp_path / "onnx")
    expected, _ = evaluate_predictions(classifiers["max"], trained / "train.csv", precision="fp32")
    code, out, err = run_cli(capsys, "eval", onnx_dir, trained / "train.csv", "--json")
    assert code in (0, None), err
    assert json.loads(out)["accuracy"] == expected["accuracy"] and json.loads(out)["n"] == 90
    code, out, err = run_cli(capsys, "predict", onnx_dir, trained / "train.csv", "--out", tmp_path / "p.csv")
    assert code in (0, None), err
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 91


def test_int8_export_is_smaller_and_close(classifiers, trained, tmp_path, capsys):
    fp32 = export(capsys, classifiers["mean"], tmp_path / "fp32")
    int8 = export(capsys, classifiers["mean"], tmp_path / "int8", "--int8")
    assert json.loads((int8 / "tinylm_onnx.json").read_text())["precision"] == "int8"
    import onnx

    ops = {node.op_type for node in onnx.load(str(int8 / "model.onnx")).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}, ops
    assert (int8 / "model.onnx").stat().st_size < 0.6 * (fp32 / "model.onnx").stat().st_size
    a = np.array([list(r["probabilities"].values()) for r in predict(fp32, trained / "train.csv")])
    b = np.array([list(r["probabilities"].values()) for r in predict(int8, trained / "train.csv")])
    assert np.abs(a - b).max() < 0.05  # quantisation error, not a different model


def test_base_export_gives_the_mlm_logits(trained, tmp_path, capsys):
    import onnxruntime

    onnx_dir = export(capsys, trained / "base", tmp_path / "onnx")
    assert json.loads((onnx_dir / "tinylm_onnx.json").read_text())["kind"] == "mlm"
    model, tokenizer, _ = load_checkpoint(trained / "base")
    input_ids, attention_mask = pad_batch(encode_documents(tokenizer, real_texts(), 64), tokenizer.token_to_id("[PAD]"))
    with torch.no_grad():
        expected = model.eval()(input_ids, attention_mask)
    session = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()})[0]
    real = attention_mask.bool()
    assert np.abs(expected[real].numpy() - got[real.numpy()]).max() < TOLERANCE
    assert_one_line_error(capsys, ["predict", onnx_dir, trained / "train.csv"], "need a classifier export")


def test_the_documented_server_runs_without_pytorch(classifiers, tmp_path, capsys):
    """docs/deploy.md's serving snippet (onnxruntime, tokenizers, numpy) gives tinylm's predictions, with PyTorch
    made unimportable."""
    onnx_dir = export(capsys, classifiers["mean"], tmp_path / "onnx")
    snippet = re.search(r"```python\n(# serve\.py.*?)```", (ROOT / "docs" / "deploy.md").read_text(), re.S).group(1)
    (tmp_path / "serve.py").write_text("import sys\nsys.modules['torch'] = None  # no PyTorch on this server\n" + snippet)
    texts = real_texts()
    done = subprocess.run([sys.executable, str(tmp_path / "serve.py"), str(onnx_dir), *texts], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    served = [json.loads(line) for line in done.stdout.splitlines()]
    ours = predict(classifiers["mean"], write_texts(tmp_path / "t.csv", texts), precision="fp32")
    assert [s["label"] for s in served] == [r["label"] for r in ours]
    assert max(abs(s["probabilities"][k] - r["probabilities"][k]) for s, r in zip(served, ours)
               for k in r["probabilities"]) < TOLERANCE


# ---- clear errors ---------------------------------------------------------------------------------------------

def test_onnx_refusals_are_one_line(classifiers, trained, tmp_path, capsys, monkeypatch):
    onnx_dir = export(capsys, classifiers["max"], tmp_path / "onnx")
    intact = export(capsys, classifiers["max"], tmp_path / "intact")
    data = trained / "train.csv"
    assert_one_line_error(capsys, ["predict", onnx_dir, data, "--device", "cuda"], "leave out --device")
    assert_one_line_error(capsys, ["predict", onnx_dir, data, "--precision", "bf16"], "leave out --device")
    code, _, err = run_cli(capsys, "export", classifiers["max"], tmp_path / "hf")
    assert code in (0, None), err
    assert_one_line_error(capsys, ["predict", tmp_path / "hf", data], "tinylm import")
    assert_one_line_error(capsys, ["finetune", data, "--base", onnx_dir, "--out", tmp_path / "x"], "no config.json")

    (onnx_dir / "model.onnx").write_bytes(b"not a model")
    assert_one_line_error(capsys, ["predict", onnx_dir, data], "not a model ONNX Runtime can run")
    (onnx_dir / "tokenizer.json").unlink()
    assert_one_line_error(capsys, ["predict", onnx_dir, data], "has no tokenizer.json")

    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("onnx") else real_find_spec(name, *a))
    assert_one_line_error(capsys, ["predict", intact, data], "pip install 'tinylm[onnx]'")
    assert_one_line_error(capsys, ["export", classifiers["max"], tmp_path / "o2", "--format", "onnx"],
                          "pip install 'tinylm[onnx]'")

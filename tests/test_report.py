"""Evaluation a practitioner expects: `tinylm eval` on base checkpoints (masked-token accuracy, perplexity),
--errors and --out on `tinylm eval`, and the PNG plots of `tinylm report`."""

import csv
import importlib.util
import json
import math
import shutil
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import write_labelled_csv
from test_errors import assert_one_line_error, run_cli
from tinylm.checkpoint import load_checkpoint
from tinylm.config import PRESETS, PretrainConfig, RunOptions
from tinylm.data import PackedRows, hold_out, read_texts, token_stream
from tinylm.evaluate import masked_lm_metrics, mlm_metrics
from tinylm.model import BertForMaskedLM
from tinylm.pretrain import pretrain
from tinylm.tokenizer import SPECIAL_TOKENS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def eval_json(capsys, *args) -> dict:
    code, out, err = run_cli(capsys, "eval", *args, "--json")
    assert code in (0, None), err
    return json.loads(out)


# ---- eval on a base (MLM) checkpoint ---------------------------------------------------------------------------

def test_base_eval_gives_masked_accuracy_and_perplexity(capsys, trained):
    report = eval_json(capsys, trained / "base", trained / "train.csv")
    assert report["kind"] == "mlm" and report["n_tokens"] > 0 and report["n_documents"] == 90
    assert 0.0 <= report["accuracy"] <= 1.0
    assert math.isfinite(report["perplexity"]) and report["perplexity"] >= 1.0
    assert report["perplexity"] == pytest.approx(math.exp(report["cross_entropy"]), rel=1e-12)
    assert report["seq_len"] == 32 and report["mlm_probability"] == 0.3  # as the base was pretrained

    code, out, _ = run_cli(capsys, "eval", trained / "base", trained / "train.csv")
    assert "masked-token accuracy" in out and "perplexity" in out


def test_base_eval_is_fixed_by_the_seed_not_the_batch_size(capsys, trained):
    whole = eval_json(capsys, trained / "base", trained / "train.csv")
    small_batches = eval_json(capsys, trained / "base", trained / "train.csv", "--batch-size", "3")
    assert small_batches["n_tokens"] == whole["n_tokens"] and small_batches["accuracy"] == whole["accuracy"]
    assert small_batches["cross_entropy"] == pytest.approx(whole["cross_entropy"], rel=1e-5)
    other_seed = eval_json(capsys, trained / "base", trained / "train.csv", "--seed", "1")
    assert other_seed["seed"] == 1 and (other_seed["n_tokens"], other_seed["cross_entropy"]) != \
        (whole["n_tokens"], whole["cross_entropy"])


def test_more_pretraining_gives_lower_perplexity_than_random_weights(trained, tmp_path):
    pretrain([trained / "train.csv"], trained / "tokenizer", tmp_path / "base", replace(PRESETS["tiny"].model),
             PretrainConfig.of(max_steps=60, batch_size=16, seq_len=32, lr=2e-3), RunOptions(quiet=True))
    model, tokenizer, _ = load_checkpoint(tmp_path / "base", expect_kind="mlm")
    held_out = read_texts(write_labelled_csv(tmp_path / "held_out.csv", n=60, seed=1))
    torch.manual_seed(1)
    random_init = BertForMaskedLM(model.config)
    trained_figures = mlm_metrics(model, tokenizer, held_out, seq_len=32)
    random_figures = mlm_metrics(random_init, tokenizer, held_out, seq_len=32)
    assert trained_figures["n_tokens"] == random_figures["n_tokens"]  # the same blanks to fill in
    assert trained_figures["perplexity"] < random_figures["perplexity"] / 3, (trained_figures, random_figures)
    assert trained_figures["accuracy"] > random_figures["accuracy"]


def test_pretraining_logs_the_loss_on_held_out_rows_and_reports_it(trained, tmp_path):
    corpus = write_labelled_csv(tmp_path / "corpus.csv", n=600, seed=2)  # 676 rows of 32: 32 held out
    summary = pretrain([corpus], trained / "tokenizer", tmp_path / "base", replace(PRESETS["tiny"].model),
                       PretrainConfig.of(max_steps=150, batch_size=16, seq_len=32, lr=3e-3, val_every=30),
                       RunOptions(quiet=True))
    records = [json.loads(line) for line in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()]
    held_out = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in held_out] == [30, 60, 90, 120, 150]
    assert all(0 < r["epoch_fraction"] <= 1 and 0 <= r["val_masked_accuracy"] <= 1 for r in held_out)
    losses = [r["val_loss"] for r in held_out]  # 3.25 falling to 3.06 on unseen rows (training loss 3.09)
    assert all(a > b for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.1
    assert summary["val_loss"] == held_out[-1]["val_loss"]

    # the last figure is the saved model's, on rows the run never trained on
    model, tokenizer, _ = load_checkpoint(tmp_path / "base", expect_kind="mlm")
    rows = PackedRows(token_stream(tokenizer, read_texts(corpus)), 32, tokenizer.token_to_id("[CLS]"),
                      tokenizer.token_to_id("[PAD]"))
    _, held_rows = hold_out(rows, 0.05, seed=0, most=256)
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    rescored = masked_lm_metrics(model, torch.from_numpy(held_rows.take(np.arange(len(held_rows)))), ids,
                                 tokenizer.get_vocab_size(), 0.3, seed=0)
    assert len(held_rows) == 32 and rescored["cross_entropy"] == pytest.approx(held_out[-1]["val_loss"], rel=1e-5)

    if importlib.util.find_spec("matplotlib"):
        from tinylm.report import draw_report
        assert draw_report(tmp_path / "base") == [tmp_path / "base" / "loss.png"]


# ---- --errors and --out -----------------------------------------------------------------------------------------

def test_errors_file_holds_exactly_the_misclassified_rows(capsys, trained, tmp_path):
    data = trained / "train.csv"
    code, out, err = run_cli(capsys, "predict", trained / "classifier", data)
    predictions = [json.loads(line) for line in out.splitlines()]
    with open(data, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # One physical line per row here, after the header: row i is on line i + 2.
    expected = [(f"{data}:{i + 2}", row, p) for i, (row, p) in enumerate(zip(rows, predictions)) if p["label"] != row["label"]]
    assert expected, "the fixture's classifier is weak on purpose; with no errors this test would prove nothing"

    report = eval_json(capsys, trained / "classifier", data, "--errors", tmp_path / "errors.jsonl")
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(errors) == report["n"] - sum(report["confusion"][i][i] for i in range(len(report["labels"])))
    assert [e["where"] for e in errors] == [where for where, _, _ in expected]
    for error, (_, row, p) in zip(errors, expected):
        assert (error["text"], error["label"], error["predicted"]) == (row["text"], row["label"], p["label"])
        assert error["probabilities"] == p["probabilities"]
        assert error["probability"] == p["probabilities"][p["label"]] == max(p["probabilities"].values())

    eval_json(capsys, trained / "classifier", data, "--errors", tmp_path / "errors.csv")
    with open(tmp_path / "errors.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["where", "text", "label", "predicted", "probability", *(f"p_{x}" for x in report["labels"])]
    assert [(r["where"], r["text"], r["predicted"]) for r in table] == [(e["where"], e["text"], e["predicted"]) for e in errors]
    assert [float(r[f"p_{r['predicted']}"]) for r in table] == [e["probability"] for e in errors]


@pytest.mark.parametrize("kind", ["classifier", "base"])
def test_out_writes_the_report_printed_by_json(kind, capsys, trained, tmp_path):
    printed = eval_json(capsys, trained / kind, trained / "train.csv", "--out", tmp_path / "eval.json")
    assert json.loads((tmp_path / "eval.json").read_text(encoding="utf-8")) == printed
    code, out, _ = run_cli(capsys, "eval", trained / kind, trained / "train.csv", "--out", tmp_path / "again.json")
    assert f"report -> {tmp_path / 'again.json'}" in out
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8")) == printed


# ---- tinylm report ----------------------------------------------------------------------------------------------

def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 10_000, (path, len(data))  # a drawn figure, not an empty canvas


def test_report_draws_a_finetune_run_and_its_evaluation(capsys, trained, tmp_path):
    pytest.importorskip("matplotlib")
    run = shutil.copytree(trained / "classifier", tmp_path / "run")
    eval_json(capsys, run, trained / "train.csv", "--out", run / "eval.json")
    eval_json(capsys, trained / "base", trained / "train.csv", "--out", run / "eval_mlm.json")  # no matrix: passed over
    code, out, err = run_cli(capsys, "report", run)
    assert code in (0, None), err
    written = [run / "loss.png", run / "validation.png", run / "confusion.png"]
    assert out.split() == [word for path in written for word in ("wrote", str(path))]
    for path in written:
        assert_png(path)

    code, out, err = run_cli(capsys, "report", run, "--eval", run / "eval.json", "--out", tmp_path / "plots")
    assert code in (0, None), err
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["confusion.png", "loss.png", "validation.png"]


def test_report_tolerates_extra_keys_and_records_without_loss(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    records = [{"step": 10, "loss": 4.0, "lr": 1e-3, "tokens": 100, "grad_norm": [1.5]},
               {"step": 20, "loss": 3.0, "lr": 5e-4},
               {"step": 20, "epoch": 1, "val_accuracy": 0.5, "val_loss": 1.2},  # no macro-F1: fine
               {"step": 25, "note": "checkpoint saved"},
               {"step": 28, "epoch": 2, "epoch_fraction": 0.4, "val_accuracy": 0.6},  # a budget's part-epoch
               {"step": 30, "loss": 2.5}]  # no lr
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    code, out, err = run_cli(capsys, "report", tmp_path)
    assert code in (0, None), err
    for name in ("loss.png", "validation.png"):
        assert_png(tmp_path / name)
    assert not (tmp_path / "confusion.png").exists()
    bad = records + [{"step": 40, "epoch": 3, "epoch_fraction": "half", "val_accuracy": 0.7}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in bad))
    code, _, err = run_cli(capsys, "report", tmp_path)
    assert code not in (0, None) and "'epoch_fraction' must be a number" in err


def test_report_without_matplotlib_says_how_to_install_it(capsys, trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib... now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert_one_line_error(capsys, ["report", trained / "classifier"], "pip install 'tinylm[plot]'")

"""The whole pipeline through the command line, on the bundled invoices and on real data nobody tuned for."""

import csv
import json
import math
import subprocess
import sys
from collections import Counter

import pytest

from conftest import DATA, SHARED
from test_errors import run_cli


def majority_share(path, label_column="label"):
    with open(path, newline="", encoding="utf-8") as f:
        counts = Counter(row[label_column] for row in csv.DictReader(f))
    return max(counts.values()) / sum(counts.values())


def losses(run_dir):
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def run_pipeline(capsys, tmp_path, train, test, corpus, pretrain_steps, epochs, seq_len):
    for args in (
        ["tokenize", *corpus, "--out", tmp_path / "tok", "--vocab-size", "2000"],
        ["pretrain", *corpus, "--tokenizer", tmp_path / "tok", "--out", tmp_path / "base", "--preset", "tiny",
         "--max-steps", str(pretrain_steps), "--quiet"],
        ["finetune", train, "--base", tmp_path / "base", "--out", tmp_path / "clf", "--epochs", str(epochs),
         "--lr", "1e-3", "--seq-len", str(seq_len), "--batch-size", "16", "--quiet"],
    ):
        code, _, err = run_cli(capsys, *args)
        assert code in (0, None), err
    code, out, err = run_cli(capsys, "eval", tmp_path / "clf", test, "--json")
    assert code in (0, None), err
    return json.loads(out)


def unigram_entropy(tokenizer_dir, corpus):
    """The MLM loss of a model that reads no context: the entropy of the corpus's token frequencies."""
    from tinylm.data import read_texts
    from tinylm.tokenizer import load_tokenizer

    counts = Counter(i for e in load_tokenizer(tokenizer_dir).encode_batch(read_texts(corpus), add_special_tokens=False)
                     for i in e.ids)
    total = sum(counts.values())
    return -sum(n / total * math.log(n / total) for n in counts.values())


def test_pipeline_on_bundled_invoices(capsys, tmp_path):
    report = run_pipeline(capsys, tmp_path, DATA / "train.csv", DATA / "test.csv", [DATA / "corpus.jsonl"],
                          pretrain_steps=200, epochs=6, seq_len=256)
    mlm, entropy = losses(tmp_path / "base"), unigram_entropy(tmp_path / "tok", DATA / "corpus.jsonl")
    assert mlm[0] < math.log(2000) - 2 and abs(mlm[0] - entropy) < 0.3, (mlm, entropy)  # starts at the prior
    assert mlm[-1] < entropy - 0.2, f"MLM loss should fall below the unigram entropy {entropy:.3f}: {mlm}"
    assert report["n"] > 0 and set(report) >= {"accuracy", "macro_f1", "n", "per_class"}
    assert report["accuracy"] > majority_share(DATA / "test.csv") + 0.3, report["accuracy"]

    # The human-readable report, and predictions in input order with probabilities.
    code, out, _ = run_cli(capsys, "eval", tmp_path / "clf", DATA / "test.csv")
    assert "macro-F1" in out and "confusion matrix" in out and "precision" in out
    code, _, err = run_cli(capsys, "predict", tmp_path / "clf", DATA / "test.csv", "--out", tmp_path / "p.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    with open(DATA / "test.csv", newline="", encoding="utf-8") as f:
        assert len(rows) == sum(1 for _ in csv.DictReader(f))
    labels = set(report["per_class"])
    for row in rows:
        assert row["label"] in labels and set(row["probabilities"]) == labels
        assert abs(sum(row["probabilities"].values()) - 1) < 1e-4
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)
    code, _, _ = run_cli(capsys, "predict", tmp_path / "clf", DATA / "test.csv", "--out", tmp_path / "p.csv")
    with open(tmp_path / "p.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["label"] for r in csv_rows] == [r["label"] for r in rows]


def test_predict_keeps_input_order_and_ids(capsys, trained, tmp_path):
    path = tmp_path / "new.jsonl"
    docs = [{"doc": f"d{i}", "text": t} for i, t in enumerate(["hotel taxi flight", "toner paper", "x " * 2000, "cloud licence"])]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    code, out, err = run_cli(capsys, "predict", trained / "classifier", path, "--id-column", "doc")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == ["d0", "d1", "d2", "d3"]


@pytest.mark.skipif(not (SHARED / "trec").is_dir(), reason="../shared/datasets is not beside this checkout")
def test_pipeline_on_real_data_nobody_tuned_for(capsys, tmp_path):
    """TREC question types: short texts, six unbalanced classes, nothing to do with invoices."""
    sample = tmp_path / "train.csv"
    with open(SHARED / "trec" / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:2000]
    with open(sample, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    report = run_pipeline(capsys, tmp_path, sample, SHARED / "trec" / "test.csv", [SHARED / "trec" / "train.csv"],
                          pretrain_steps=60, epochs=4, seq_len=48)
    assert report["accuracy"] > majority_share(SHARED / "trec" / "test.csv") + 0.1, report["accuracy"]


def test_console_script_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "tinylm", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "pretrain" in result.stdout
    result = subprocess.run([sys.executable, "-m", "tinylm", "eval", "/nonexistent", "x.csv"], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr

"""Multi-label classification: label sets, thresholds, metrics, and the pipeline through the command line."""

import csv
import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from test_errors import assert_one_line_error, run_cli
from tinylm.evaluate import multi_label_report
from tinylm.finetune import start_at_prior
from tinylm.labels import (MULTI_LABEL, LabelScheme, balanced_pos_weight, choose_thresholds, multi_label_decisions,
                           multi_label_prior, multi_label_prior_loss, probabilities, split_labels)
from tinylm.model import BertForSequenceClassification

TOPICS = {"grain": ["wheat", "corn", "harvest", "silo"], "oil": ["crude", "barrel", "refinery", "opec"],
          "money": ["dollar", "rate", "bank", "yen"]}


def write_multi_label_csv(path, n=120, seed=0, separator="|", column="labels"):
    """Each topic present with probability 0.45, independently; its keywords make it learnable in a few steps. A
    document without a topic has an empty label cell."""
    rng = random.Random(seed)
    filler = ["the", "market", "said", "today", "traders", "reported", "week", "officials"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", column])
        for _ in range(n):
            topics = [t for t in TOPICS if rng.random() < 0.45]
            words = [rng.choice(filler) for _ in range(6)] + [rng.choice(TOPICS[t]) for t in topics for _ in range(3)]
            rng.shuffle(words)
            writer.writerow([" ".join(words), separator.join(topics)])
    return path


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
    """Data, a tokenizer and a base, pretrained for a few steps, and a multi-label classifier fine-tuned from it
    through the CLI."""
    from tinylm.cli import main

    root = tmp_path_factory.mktemp("multi")
    train = write_multi_label_csv(root / "train.csv")
    write_multi_label_csv(root / "test.csv", n=60, seed=1)
    for args in (["tokenize", train, "--out", root / "tok", "--vocab-size", "200"],
                 ["pretrain", train, "--tokenizer", root / "tok", "--out", root / "base", "--preset", "tiny",
                  "--max-steps", "8", "--seq-len", "32", "--quiet"],
                 ["finetune", train, "--base", root / "base", "--out", root / "clf", "--multi-label", "--epochs", "8",
                  "--lr", "2e-3", "--seq-len", "32", "--batch-size", "16", "--quiet"]):
        with pytest.raises(SystemExit) as done:
            main([str(a) for a in args])
        assert done.value.code in (0, None)
    return root


def test_split_labels_reads_sets_and_empty_cells():
    assert split_labels("wheat|grain|corn") == ["corn", "grain", "wheat"]
    assert split_labels("") == [] and split_labels(" | ") == []
    assert split_labels("a; b;a", ";") == ["a", "b"]


def test_multi_label_report_matches_hand_computed_figures():
    labels = ["a", "b", "c"]
    truth = [[1, 1, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]]
    predicted = [[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1]]
    report = multi_label_report(np.array(truth), np.array(predicted), labels)
    # tp 4 (a twice, b once, c once), fp 1 (c in doc 2), fn 1 (b in doc 1): micro-F1 = 8 / (8 + 1 + 1)
    assert report["micro_f1"] == pytest.approx(0.8)
    # a: p 1, r 1 -> 1; b: p 1, r 1/2 -> 2/3; c: p 1/2, r 1 -> 2/3
    assert report["per_class"]["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert report["per_class"]["c"]["precision"] == 0.5 and report["per_class"]["c"]["support"] == 1
    assert report["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # per document: 2/3, 2/3, 1 (nothing to find, nothing found), 1
    assert report["samples_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 1) / 4)
    assert report["subset_accuracy"] == 0.5 and report["n"] == 4


def test_thresholds_chosen_on_validation():
    truth = np.array([[1, 0], [1, 0], [1, 1], [0, 1], [0, 1], [0, 0]])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.2, 0.35], [0.1, 0.3], [0.3, 0.05]])
    per_label = choose_thresholds(probs, truth, "per-label")
    assert 0.3 < per_label[0] <= 0.7  # label a: anything between its negatives' 0.3 and its positives' 0.7
    assert 0.05 < per_label[1] <= 0.3  # label b: its positives reach 0.3, its negatives 0.2 and below
    decided = multi_label_decisions(torch.tensor(probs, dtype=torch.float32), per_label).numpy()
    assert (decided == truth.astype(bool)).all()
    (shared, also) = choose_thresholds(probs, truth, "global")
    assert shared == also  # one threshold for all
    # a label with fewer than 3 validation positives takes the global threshold
    rare = np.array([[1, 0], [0, 0], [0, 1], [0, 1], [0, 1], [0, 0]])
    assert choose_thresholds(probs, rare, "per-label")[0] == choose_thresholds(probs, rare, "global")[0]


def test_per_label_thresholds_never_flood_documents_with_an_unlearnt_label():
    """Label b is not learnt: its 3 positives score below 10 of its negatives. Its own best F1 would come from
    predicting it on 13 documents; that lowers micro-F1, so it keeps a threshold that predicts it nowhere."""
    a = [0.9] * 10 + [0.1] * 10
    b = [0.03] * 3 + [0.05] * 10 + [0.02] * 7
    truth = np.array([[1, 1]] * 3 + [[1, 0]] * 7 + [[0, 0]] * 10)
    probs = np.array([a, b], dtype=np.float32).T
    per_label, (shared, _) = choose_thresholds(probs, truth, "per-label"), choose_thresholds(probs, truth, "global")
    assert per_label[1] > 0.05 and per_label[0] == shared

    def micro(thresholds):
        return multi_label_report(truth, probs >= np.array(thresholds), ["a", "b"])["micro_f1"]

    assert micro(per_label) == micro([shared] * 2) > micro([shared, 0.03])  # 0.03: the label's own best F1


def test_multi_label_head_starts_at_the_label_shares():
    """The bias of a fresh multi-label head: the loss of a head that ignores the text is the prior loss from the
    first step (not ln 2), with and without positive weights."""
    torch.manual_seed(0)
    targets = torch.tensor([[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 1]], dtype=torch.float32)
    for pos_weight in (None, balanced_pos_weight(targets.numpy())):
        model = BertForSequenceClassification(tiny_config(), 3, pooling="cls", problem_type=MULTI_LABEL).eval()
        torch.nn.init.zeros_(model.classifier.weight)
        start_at_prior(model, multi_label_prior(targets.numpy(), pos_weight))
        loss, _ = model(torch.randint(5, 97, (5, 9)), labels=targets, pos_weight=pos_weight)
        assert loss.item() == pytest.approx(multi_label_prior_loss(targets.numpy(), pos_weight), rel=1e-5)


def test_multi_label_loss_is_transformers_bce_with_logits():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(), 3, pooling="cls", problem_type=MULTI_LABEL).eval()
    input_ids = torch.randint(5, 97, (4, 9))
    targets = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=torch.float32)
    loss, logits = model(input_ids, labels=targets)
    assert torch.allclose(loss, torch.nn.BCEWithLogitsLoss()(logits, targets))  # transformers' multi-label loss
    weight = balanced_pos_weight(targets.numpy())
    assert weight.tolist() == [1.0, 1.0, 1.0]  # 2 positives, 2 negatives each
    skewed = balanced_pos_weight(np.array([[1, 0]] + [[0, 0]] * 99 + [[0, 1]] * 3, dtype=np.float32))
    assert skewed[0] == 50.0 and skewed[1] == pytest.approx(100 / 3)  # negatives / positives, capped
    loss_w, _ = model(input_ids, labels=targets, pos_weight=torch.tensor([3.0, 1.0, 1.0]))
    assert torch.allclose(loss_w, F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor([3.0, 1, 1])))
    assert torch.allclose(probabilities(logits, MULTI_LABEL), torch.sigmoid(logits))


def test_label_scheme_rows_per_problem_type():
    probs = torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.05, 0.1]])
    multi = LabelScheme(["a", "b", "c"], MULTI_LABEL, [0.5, 0.1, 0.7])
    assert [row["labels"] for row in multi.rows(probs)] == [["a", "b"], []]
    assert multi.rows(probs)[0]["probabilities"] == {"a": 0.9, "b": 0.2, "c": 0.6}
    single = LabelScheme(["a", "b", "c"])
    assert [row["label"] for row in single.rows(probs)] == ["a", "a"] and single.config_fields() == {}


def test_finetune_learns_and_stores_its_thresholds(multi):
    metrics = [json.loads(line) for line in (multi / "clf" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in metrics if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
    assert any("val_micro_f1" in r for r in metrics)
    config = json.loads((multi / "clf" / "config.json").read_text())
    assert config["problem_type"] == MULTI_LABEL and config["label_separator"] == "|"
    assert sorted(config["thresholds"]) == sorted(TOPICS) and all(0 < t < 1 for t in config["thresholds"].values())
    args = json.loads((multi / "clf" / "training_args.json").read_text())
    assert args["train"]["multi_label"] is True and args["best"]["val_micro_f1"] > 0.6


def test_eval_reports_multi_label_figures_and_errors(multi, capsys, tmp_path):
    code, out, err = run_cli(capsys, "eval", multi / "clf", multi / "test.csv", "--json", "--errors",
                             tmp_path / "errors.jsonl")  # the "labels" column is found without --label-column
    assert code in (0, None), err
    report = json.loads(out)
    assert report["problem_type"] == MULTI_LABEL and report["n"] == 60
    assert report["micro_f1"] > 0.6 and 0 <= report["subset_accuracy"] <= 1
    assert set(report) >= {"macro_f1", "samples_f1", "per_class", "thresholds"}
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == round(60 * (1 - report["subset_accuracy"]))
    assert all(row["labels"] != row["predicted"] and isinstance(row["predicted"], list) for row in errors)
    code, out, _ = run_cli(capsys, "eval", multi / "clf", multi / "test.csv")
    assert "micro-F1" in out and "subset accuracy" in out and "per label" in out


def test_stored_thresholds_decide(multi, capsys, tmp_path):
    from tinylm.evaluate import predict

    rows = predict(multi / "clf", multi / "test.csv")
    config = json.loads((multi / "clf" / "config.json").read_text())
    for row in rows:
        assert row["labels"] == [label for label, p in row["probabilities"].items() if p >= config["thresholds"][label]]
    lowered = tmp_path / "clf"  # the same model with other thresholds answers otherwise
    import shutil
    shutil.copytree(multi / "clf", lowered)
    config["thresholds"] = dict.fromkeys(config["thresholds"], 0.01)
    (lowered / "config.json").write_text(json.dumps(config))
    assert all(row["labels"] == sorted(TOPICS) for row in predict(lowered, multi / "test.csv"))


def test_predict_writes_label_lists(multi, capsys, tmp_path):
    code, out, err = run_cli(capsys, "predict", multi / "clf", multi / "test.csv")
    assert code in (0, None), err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 60 and all(isinstance(r["labels"], list) and set(r["probabilities"]) == set(TOPICS) for r in rows)
    code, _, err = run_cli(capsys, "predict", multi / "clf", multi / "test.csv", "--out", tmp_path / "p.csv")
    assert code in (0, None), err
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [split_labels(r["labels"]) for r in table] == [r["labels"] for r in rows]
    assert set(table[0]) == {"labels", *(f"p_{t}" for t in TOPICS)}


def test_label_separator_flag(multi, tmp_path, capsys):
    train = write_multi_label_csv(tmp_path / "semi.csv", n=40, separator=";", column="topics")
    code, out, err = run_cli(capsys, "finetune", train, "--base", multi / "base", "--out", tmp_path / "clf",
                             "--multi-label", "--label-separator", ";", "--label-column", "topics", "--epochs", "1",
                             "--seq-len", "32", "--quiet")
    assert code in (0, None), err
    config = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert sorted(config["id2label"].values()) == sorted(TOPICS) and config["label_separator"] == ";"
    code, out, err = run_cli(capsys, "eval", tmp_path / "clf", train, "--label-column", "topics", "--json")
    assert code in (0, None) and json.loads(out)["n"] == 40, err
    assert_one_line_error(capsys, ["finetune", train, "--base", multi / "base", "--out", tmp_path / "x",
                                   "--label-separator", ";"], "--multi-label")


def test_export_is_multi_label_in_transformers_with_the_same_probabilities(multi, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    from tinylm.checkpoint import load_checkpoint
    from tinylm.data import encode_documents, pad_batch

    from tinylm.config import FinetuneConfig, RunOptions
    from tinylm.finetune import finetune

    finetune(multi / "train.csv", multi / "base", tmp_path / "clf", FinetuneConfig.of(
        epochs=1, batch_size=16, seq_len=32, pooling="cls", multi_label=True), run=RunOptions(quiet=True))
    code, _, err = run_cli(capsys, "export", tmp_path / "clf", tmp_path / "hf")
    assert code in (0, None), err
    hf_model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert hf_model.config.problem_type == MULTI_LABEL
    model, tokenizer, _ = load_checkpoint(tmp_path / "clf")
    with open(multi / "test.csv", newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:16]
    input_ids, attention_mask = pad_batch(encode_documents(tokenizer, texts, 64), 0)
    with torch.no_grad():
        ours = torch.sigmoid(model.eval()(input_ids, attention_mask))
        theirs = torch.sigmoid(hf_model.eval()(input_ids=input_ids, attention_mask=attention_mask).logits)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    targets = torch.zeros(len(texts), len(TOPICS))  # and transformers trains it with BCEWithLogitsLoss
    assert torch.allclose(hf_model(input_ids=input_ids, attention_mask=attention_mask, labels=targets).loss,
                          F.binary_cross_entropy_with_logits(model(input_ids, attention_mask), targets), atol=1e-5)


def test_one_line_errors_between_problem_types(multi, trained, tmp_path, capsys):
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("text,labels\nwheat corn,grain|sugar\n", encoding="utf-8")
    assert_one_line_error(capsys, ["eval", multi / "clf", unknown], "'sugar'")
    joined = tmp_path / "joined.csv"  # label sets given to a single-label classifier
    joined.write_text("text,label\nflight hotel,travel|office\n", encoding="utf-8")
    assert_one_line_error(capsys, ["eval", trained / "classifier", joined], "--multi-label")
    # fine-tuning starts from a base only, so a classifier of either kind is refused as --base
    assert_one_line_error(capsys, ["finetune", multi / "train.csv", "--base", multi / "clf", "--out", tmp_path / "x",
                                   "--multi-label"], "needs a base")
    from tinylm.checkpoint import read_config
    from tinylm.labels import SINGLE_LABEL, check_problem_type
    from tinylm.errors import TinyLMError
    with pytest.raises(TinyLMError, match="multi-label"):
        check_problem_type(read_config(multi / "clf")[1], SINGLE_LABEL, multi / "clf")
    bad = tmp_path / "bad"  # a config.json whose thresholds do not cover the labels
    import shutil
    shutil.copytree(multi / "clf", bad)
    config = json.loads((bad / "config.json").read_text())
    del config["thresholds"]["oil"]
    (bad / "config.json").write_text(json.dumps(config))
    assert_one_line_error(capsys, ["predict", bad, multi / "test.csv"], "thresholds")


def test_single_label_config_has_no_multi_label_fields(trained):
    config = json.loads((trained / "classifier" / "config.json").read_text())
    assert not {"problem_type", "thresholds", "label_separator"} & set(config)
    args = json.loads((trained / "classifier" / "training_args.json").read_text())
    assert not {"multi_label", "label_separator", "thresholds"} & set(args["train"])


def test_windows_average_sigmoids(multi):
    from tinylm.checkpoint import load_checkpoint
    from tinylm.evaluate import predict_proba

    model, tokenizer, _ = load_checkpoint(multi / "clf")
    text = "wheat corn harvest " * 12 + "crude barrel opec " * 12
    windows = predict_proba(model, tokenizer, [text], seq_len=16, long_docs="windows")
    from tinylm.data import encode_windows, pad_batch
    pieces, _ = encode_windows(tokenizer, [text], 16)
    with torch.no_grad():
        each = torch.sigmoid(model.eval()(*pad_batch(pieces, 0)))
    torch.testing.assert_close(windows[0], each.mean(0), atol=1e-6, rtol=0)


def test_report_draws_multi_label_validation_and_label_f1(multi, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, _, err = run_cli(capsys, "eval", multi / "clf", multi / "test.csv", "--out", tmp_path / "eval_test.json")
    assert code in (0, None), err
    code, out, err = run_cli(capsys, "report", multi / "clf", "--eval", tmp_path / "eval_test.json", "--out", tmp_path)
    assert code in (0, None), err
    for name in ("loss.png", "validation.png", "label_f1_test.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name


def test_a_max_pooled_multi_label_classifier_serves_through_onnx_and_transformers(multi, tmp_path, capsys):
    """The default pooling (max) with sigmoids: the ONNX export decides the same label sets with the stored
    thresholds, and the transformers export (remote code) gives the same sigmoid probabilities."""
    pytest.importorskip("onnxruntime")
    transformers = pytest.importorskip("transformers")
    from tinylm.evaluate import predict

    for args in (["export", multi / "clf", tmp_path / "onnx", "--format", "onnx"],
                 ["export", multi / "clf", tmp_path / "hf"]):
        code, _, err = run_cli(capsys, *args)
        assert code in (0, None), err
    ours = predict(multi / "clf", multi / "test.csv", batch_size=8, precision="fp32")
    served = predict(tmp_path / "onnx", multi / "test.csv", batch_size=8)
    assert [r["labels"] for r in served] == [r["labels"] for r in ours]
    assert any(len(r["labels"]) > 1 for r in ours)
    assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for a, b in zip(ours, served)
               for k in a["probabilities"]) < 1e-4

    classify = transformers.pipeline("text-classification", model=str(tmp_path / "hf"), trust_remote_code=True,
                                     top_k=None)
    assert classify.model.config.problem_type == MULTI_LABEL
    with open(multi / "test.csv", newline="", encoding="utf-8") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    for row, scores in zip(ours, classify(texts, truncation=True)):  # the pipeline applies sigmoids
        assert max(abs(row["probabilities"][s["label"]] - s["score"]) for s in scores) < 1e-4

"""Fine-tuning options for real data: balanced class weights, length-grouped batches, long documents."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from tinylm.finetune import ClassificationBatches, balanced_weights
from tinylm.model import BertForSequenceClassification


def test_balanced_weights_make_every_class_count_the_same():
    targets = [0] * 80 + [1] * 15 + [2] * 5
    weights = balanced_weights(targets, 3)
    assert torch.allclose(weights, torch.tensor([100 / (3 * 80), 100 / (3 * 15), 100 / (3 * 5)]))
    counts = torch.bincount(torch.tensor(targets)).float()
    assert torch.allclose(weights * counts, torch.full((3,), 100 / 3))  # each class's total weight is equal


def test_weighted_batches_give_the_weighted_loss():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(), num_labels=3, pooling="mean").eval()
    sequences = [[2, 5 + i, 6 + i, 3] for i in range(10)]
    targets = [0] * 7 + [1] * 2 + [2]
    weights = balanced_weights(targets, 3)
    batch = ClassificationBatches(sequences, targets, 10, 0, 0, weights)(0)[0]
    loss, logits = model(**batch.inputs)
    expected = F.cross_entropy(logits, batch.inputs["labels"], weight=weights)
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, F.cross_entropy(logits, batch.inputs["labels"]))


def test_the_base_is_pretrained_without_dropout_and_fine_tuning_puts_it_back(trained, tmp_path):
    import json

    from tinylm.config import FinetuneConfig, RunOptions
    from tinylm.finetune import finetune

    def dropouts(folder):
        config = json.loads((folder / "config.json").read_text())
        return config["hidden_dropout_prob"], config["attention_probs_dropout_prob"]

    assert dropouts(trained / "base") == (0.0, 0.0)
    assert dropouts(trained / "classifier") == (0.1, 0.1)  # the default, whatever the base had
    finetune(trained / "train.csv", trained / "base", tmp_path / "clf", FinetuneConfig.of(epochs=1, batch_size=8,
             seq_len=32, dropout=0.25), run=RunOptions(quiet=True))
    assert dropouts(tmp_path / "clf") == (0.25, 0.25)


def test_prior_loss_is_the_entropy_of_the_label_shares_as_the_loss_weighs_them():
    import math

    from tinylm.finetune import prior_loss

    targets = [0] * 6 + [1] * 3 + [2]
    assert prior_loss(targets, 3, None) == pytest.approx(-(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)))
    assert prior_loss(targets, 3, balanced_weights(targets, 3)) == pytest.approx(math.log(3))  # every class weighs alike
    assert prior_loss([0, 0, 1, 1], 4, None) == pytest.approx(math.log(2))  # labels never seen add nothing


def test_a_classifier_that_learns_nothing_from_the_text_is_called_out(trained, tmp_path, capsys):
    """Every document is the same text, so no classifier can beat the label shares: the run says so. A run on the
    real texts does not."""
    from tinylm.config import FinetuneConfig, RunOptions
    from tinylm.finetune import finetune

    (tmp_path / "same.csv").write_text("text,label\n" + "".join(f"invoice for office supplies,{'ab'[i % 2]}\n"
                                                                  for i in range(60)))
    cfg = FinetuneConfig.of(epochs=3, batch_size=8, seq_len=16)
    summary = finetune(tmp_path / "same.csv", trained / "base", tmp_path / "same", cfg, run=RunOptions(quiet=True))
    assert summary["prior_loss"] == pytest.approx(0.6931, abs=1e-4) and summary["loss"] > 0.95 * summary["prior_loss"]
    assert "learnt next to nothing from the text" in capsys.readouterr().err
    summary = finetune(trained / "train.csv", trained / "base", tmp_path / "real", FinetuneConfig.of(epochs=4, batch_size=8,
                       seq_len=32, lr=2e-3), run=RunOptions(quiet=True))
    assert summary["loss"] < 0.95 * summary["prior_loss"]
    assert "learnt next to nothing" not in capsys.readouterr().err


def test_batches_cover_every_document_once_per_epoch_grouped_by_length():
    rng = np.random.default_rng(1)
    sequences = [[2] + [7] * int(n) + [3] for n in rng.integers(1, 200, size=1000)]
    targets = list(range(1000))  # a document's target is its index, so that the test can see which ran
    batches = ClassificationBatches(sequences, targets, 8, seed=0, pad_id=0)
    assert batches.steps_per_epoch == 125
    for epoch in range(2):
        seen, padded = [], 0
        for step in range(epoch * 125, (epoch + 1) * 125):
            [batch] = batches(step)
            seen += batch.inputs["labels"].tolist()
            padded += batch.inputs["attention_mask"].numel()
            assert batch.epoch == epoch + 1 and batch.epoch_end == (step == (epoch + 1) * 125 - 1)
        assert sorted(seen) == targets  # each document exactly once
        real = sum(map(len, sequences))
        assert padded < 1.1 * real  # grouped by length: little padding (random batches of 8 carry ~50%)
    first = [batches(s)[0].inputs["input_ids"].shape for s in range(5)]
    again = ClassificationBatches(sequences, targets, 8, seed=0, pad_id=0)
    assert [again(s)[0].inputs["input_ids"].shape for s in range(5)] == first  # a pure function of (seed, step)
    assert [batches(125 + s)[0].inputs["input_ids"].shape for s in range(5)] != first  # a new order each epoch


def test_windows_cover_a_long_document_in_order(trained):
    from tinylm.data import encode_windows
    from tinylm.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(trained / "tokenizer")
    text = " ".join(["invoice total paper toner"] * 20)
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    windows, owners = encode_windows(tokenizer, [text, "short"], seq_len=16)
    doc = [w for w, o in zip(windows, owners) if o == 0]
    assert all(len(w) <= 16 and w[0] == tokenizer.token_to_id("[CLS]") and w[-1] == tokenizer.token_to_id("[SEP]")
               for w in windows)
    assert [t for w in doc for t in w[1:-1]] == ids[: 8 * 14]  # consecutive, capped at 8 windows
    assert owners.count(1) == 1


def test_window_predictions_are_the_mean_over_a_documents_windows(trained):
    from tinylm.checkpoint import load_checkpoint
    from tinylm.data import encode_windows, pad_batch
    from tinylm.evaluate import predict_proba

    model, tokenizer, _ = load_checkpoint(trained / "classifier", expect_kind="classifier")
    texts = [" ".join(["hotel taxi flight"] * 12), "toner paper", " ".join(["licence cloud"] * 9)]
    probs = predict_proba(model, tokenizer, texts, seq_len=12, long_docs="windows")
    windows, owners = encode_windows(tokenizer, texts, 12)
    for doc in range(3):
        mine = [w for w, o in zip(windows, owners) if o == doc]
        with torch.no_grad():
            each = torch.softmax(torch.cat([model(*pad_batch([w], 0)) for w in mine]), -1)
        assert torch.allclose(probs[doc], each.mean(0), atol=1e-5)
    assert not torch.allclose(probs, predict_proba(model, tokenizer, texts, seq_len=12))  # truncation differs


def test_finetune_with_windows_is_remembered_by_eval(capsys, trained, tmp_path):
    import json

    from conftest import write_labelled_csv
    from tinylm.cli import main
    from tinylm.evaluate import checkpoint_long_docs

    data = write_labelled_csv(tmp_path / "d.csv", n=60)
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in ["finetune", data, "--base", trained / "base", "--out", tmp_path / "clf", "--epochs",
                               "1", "--seq-len", "12", "--long-docs", "windows", "-q"]])
    assert done.value.code in (0, None)
    assert json.loads((tmp_path / "clf" / "training_args.json").read_text())["train"]["long_docs"] == "windows"
    assert checkpoint_long_docs(tmp_path / "clf") == "windows" and checkpoint_long_docs(trained / "classifier") == "truncate"
    with pytest.raises(SystemExit) as done:
        main(["eval", str(tmp_path / "clf"), str(data), "--json"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 60


def rescore(folder, data) -> float:
    """The saved classifier's accuracy on a labelled CSV, recomputed from the checkpoint."""
    import csv

    from tinylm.checkpoint import load_checkpoint
    from tinylm.evaluate import predict_proba

    model, tokenizer, meta = load_checkpoint(folder, expect_kind="classifier")
    with open(data, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    label2id = {label: i for i, label in meta["id2label"].items()}
    predicted = predict_proba(model, tokenizer, [r["text"] for r in rows], 32).argmax(1).tolist()
    return sum(p == label2id[r["label"]] for p, r in zip(predicted, rows)) / len(rows)


def validations(folder) -> list[dict]:
    import json

    return [r for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines()) if "val_accuracy" in r]


def test_a_max_pooled_classifier_is_saved_reloaded_and_scored_as_it_was_validated(trained, tmp_path):
    from tinylm.checkpoint import load_checkpoint
    from tinylm.config import FinetuneConfig, RunOptions
    from tinylm.finetune import finetune

    val = trained / "train.csv"
    finetune(trained / "train.csv", trained / "base", tmp_path / "clf",
             FinetuneConfig.of(epochs=2, batch_size=8, seq_len=32, pooling="max"), val_path=val,
             run=RunOptions(quiet=True))
    model, _, meta = load_checkpoint(tmp_path / "clf", expect_kind="classifier")
    assert model.pooling == "max" and meta["classifier_pooling"] == "max" and model.bert.pooler is None
    assert rescore(tmp_path / "clf", val) == pytest.approx(max(r["val_accuracy"] for r in validations(tmp_path / "clf")))


def test_val_every_validates_inside_epochs_and_keeps_the_best_point(trained, tmp_path):
    import json

    from tinylm.config import FinetuneConfig, RunOptions
    from tinylm.finetune import finetune

    val = trained / "train.csv"  # 90 documents: 12 steps an epoch at batch 8
    finetune(trained / "train.csv", trained / "base", tmp_path / "clf",
             FinetuneConfig.of(epochs=2, batch_size=8, seq_len=32, val_every=5), val_path=val, run=RunOptions(quiet=True))
    records = validations(tmp_path / "clf")
    assert [r["step"] for r in records] == [5, 10, 12, 15, 20, 24]  # every 5 steps, and every epoch's end
    assert [r["epoch"] for r in records] == [1, 1, 1, 2, 2, 2]
    assert [r.get("epoch_fraction") for r in records] == [5 / 12, 10 / 12, None, 3 / 12, 8 / 12, None]
    best = max(records, key=lambda r: r["val_accuracy"])  # the first of equals, as the run keeps it
    saved = json.loads((tmp_path / "clf" / "training_args.json").read_text())["best"]
    assert (saved["step"], saved["val_accuracy"]) == (best["step"], best["val_accuracy"])
    assert rescore(tmp_path / "clf", val) == pytest.approx(best["val_accuracy"])


def test_a_validation_tie_keeps_the_later_point(trained, tmp_path):
    import json

    from tinylm.config import FinetuneConfig, RunOptions
    from tinylm.finetune import finetune
    from tinylm.report import read_metrics

    finetune(trained / "train.csv", trained / "base", tmp_path / "clf", FinetuneConfig.of(epochs=12, batch_size=8,
             seq_len=32), run=RunOptions(quiet=True))
    scores = [(r["epoch"], r["val_accuracy"]) for r in read_metrics(tmp_path / "clf" / "metrics.jsonl")
              if "val_accuracy" in r]
    top = max(score for _, score in scores)
    assert sum(score == top for _, score in scores) > 1  # nine validation documents: the best score is reached again
    best = json.loads((tmp_path / "clf" / "training_args.json").read_text())["best"]
    assert best["epoch"] == max(epoch for epoch, score in scores if score == top)

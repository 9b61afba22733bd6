"""`tinylm finetune --unlabelled`: self-training rounds on pseudo-labels, recorded in the run folder, never worse
than the plain fine-tune on validation, deterministic, resumable, and clear about what it cannot do."""

import json
import signal
from pathlib import Path

import numpy as np
import torch
import pytest

from conftest import write_labelled_csv
from test_errors import assert_one_line_error
from test_resume import assert_bitwise_equal_weights, run_to_end, start_and_stop_at
from tinylm.config import BertConfig, FinetuneConfig, RunOptions, SELF_TRAINING_ROUNDS
from tinylm.errors import TinyLMError
from tinylm.model import BertForSequenceClassification
from tinylm.finetune import finetune, prior_loss, soft_prior_loss
from tinylm.self_training import SelfTraining, class_floors, estimated_accuracy, select_pseudo_labels

COMMON = dict(epochs=2, batch_size=16, seq_len=32, val_fraction=0.2)


def write_unlabelled(path: Path, n: int, seed: int) -> Path:
    """Texts of write_labelled_csv's kind, with no label column."""
    labelled = write_labelled_csv(path.with_suffix(".labelled.csv"), n=n, seed=seed)
    rows = [json.dumps({"text": line.rsplit(",", 1)[0].strip('"')}) for line in labelled.read_text().splitlines()[1:]]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("self-training")
    return write_labelled_csv(root / "train.csv", n=60, seed=3), write_unlabelled(root / "pool.jsonl", 240, seed=4)


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pseudo_labels_are_the_most_confident_per_class_in_the_labelled_shares():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.95, 0.05], [0.8, 0.2]])
    documents, labels = select_pseudo_labels(probs, shares=np.array([0.5, 0.5]), fraction=4 / 7)
    # two per class: class 0's most confident are 5 (0.95) and 0 (0.9); class 1 has 3 (0.7) and 4 (0.55)
    assert documents.tolist() == [0, 3, 4, 5] and labels.tolist() == [0, 1, 1, 0]
    # ties go to the earlier document (2 and 6 are both 0.8); a class predicted too rarely gives what it has
    documents, labels = select_pseudo_labels(probs, shares=np.array([3 / 7, 4 / 7]), fraction=1.0)
    assert documents.tolist() == [0, 2, 3, 4, 5] and labels.tolist() == [0, 0, 1, 1, 0]
    floors = class_floors(probs, np.array([0, 3, 4, 5]))
    assert floors.tolist() == [0.9, 0.55]
    estimate = estimated_accuracy(np.array([[0.92, 0.08], [0.7, 0.3], [0.2, 0.8], [0.4, 0.6]]), np.array([1, 0, 1, 1]),
                                  floors)
    assert estimate == {"val_documents_as_confident": 3, "val_accuracy_as_confident": 2 / 3}


def test_rounds_are_recorded_and_round_0_is_the_plain_fine_tune(trained, corpus, tmp_path):
    train, pool = corpus
    plain = finetune(train, trained / "base", tmp_path / "plain", FinetuneConfig.of(**COMMON), run=RunOptions(quiet=True))
    result = finetune(train, trained / "base", tmp_path / "st", FinetuneConfig.of(**COMMON), run=RunOptions(quiet=True),
                      self_training=SelfTraining([pool], rounds=2))
    state = json.loads((tmp_path / "st" / "self_training.json").read_text())
    assert state["finished"] and [r["round"] for r in state["rounds"]] == [0, 1, 2]
    pool_size = 240  # the generator's texts are all distinct, and none is a labelled one (other seed)
    counts = [r["pseudo_labels"] for r in state["rounds"]]
    # a class gets its share of the labelled documents (a third each here) of the round's share of the pool, or
    # fewer where the teacher predicts it less often
    assert counts[0] == 0 and 0 < counts[1] <= pool_size // 2 < counts[2] <= pool_size
    for r in state["rounds"][1:]:
        assert sum(r["per_label"].values()) == r["pseudo_labels"] and set(r["per_label"]) == {"office", "software", "travel"}
        assert max(r["per_label"].values()) <= round(r["share"] * pool_size / 3)
        assert r["val_documents_as_confident"] >= 0 and "teacher_val" in r and r["predict_s"] >= 0
        # two teachers, each calibrated on validation: the best classifier so far and the n-gram classifier
        assert set(r["teachers"]) == {"transformer", "ngrams"}
        assert all(0.25 <= t["temperature"] <= 16 and 0 <= t["val_accuracy"] <= 1 for t in r["teachers"].values())
    # co-training: the n-gram classifier learns from the labelled documents, then also from the last round's
    # pseudo-labels
    labelled, first, second = state["rounds"][0]["documents"], state["rounds"][1], state["rounds"][2]
    assert first["teachers"]["ngrams"]["documents"] == labelled
    assert second["teachers"]["ngrams"]["documents"] == labelled + first["pseudo_labels"]
    # round 0 trains exactly what the plain run trains: the same losses, step for step
    round0 = [(r["step"], r["loss"]) for r in records(tmp_path / "st") if r.get("round") == 0 and "loss" in r]
    assert round0 == [(r["step"], r["loss"]) for r in records(tmp_path / "plain") if "loss" in r]
    assert {r["round"] for r in records(tmp_path / "st")} == {0, 1, 2}
    # the kept point is the best of all rounds: never below the plain fine-tune on validation
    assert result["best"]["val_accuracy"] >= plain["best"]["val_accuracy"]
    args = json.loads((tmp_path / "st" / "training_args.json").read_text())
    assert args["best"]["round"] in (0, 1, 2) and args["self_training"]["rounds"] == 2
    assert args["self_training"]["pool"] == pool_size and args["self_training"]["ngram_teacher"]
    inputs = json.loads((tmp_path / "st" / "provenance.json").read_text())["inputs"]
    assert [i["role"] for i in inputs] == ["train", "unlabelled"]
    assert not (tmp_path / "st" / "checkpoints").exists()
    # a plain fine-tune over the folder replaces the run: the old rounds must not stay beside a model they did not make
    finetune(train, trained / "base", tmp_path / "st", FinetuneConfig.of(**COMMON),
             run=RunOptions(quiet=True, overwrite=True))
    assert not (tmp_path / "st" / "self_training.json").exists()


def test_the_same_seed_gives_the_same_classifier(trained, corpus, tmp_path):
    train, pool = corpus
    for name, ngrams in (("a", True), ("b", True), ("c", False)):
        finetune(train, trained / "base", tmp_path / name, FinetuneConfig.of(**COMMON), run=RunOptions(quiet=True),
                 self_training=SelfTraining([pool], rounds=1, ngram_teacher=ngrams))
    assert_bitwise_equal_weights(tmp_path / "a", tmp_path / "b")
    states = [json.loads((tmp_path / n / "self_training.json").read_text()) for n in ("a", "b", "c")]
    strip = [[{k: v for k, v in r.items() if not k.endswith("_s")} for r in s["rounds"]] for s in states]
    assert strip[0] == strip[1]
    assert set(strip[2][1]["teachers"]) == {"transformer"}  # --no-ngram-teacher: the transformer alone, as it is
    assert "temperature" not in strip[2][1]["teachers"]["transformer"]


def test_a_cross_fitted_ngram_teacher_labels_the_pool_with_every_label_and_is_calibrated_without_validation():
    from tinylm.ngrams import NgramClassifier

    words = {0: "toner paper stapler", 1: "laptop licence server", 2: "flight hotel taxi"}
    rng = np.random.default_rng(0)

    def texts(n):
        targets = rng.integers(0, 3, n)
        return [f"{words[t].split()[rng.integers(0, 3)]} invoice {rng.integers(100)}" for t in targets], targets

    (train, targets), (val, val_targets), (pool, _) = texts(12), texts(6), texts(30)
    plain, cross = SelfTraining([Path("pool")], texts=pool), SelfTraining([Path("pool")], ngram_cross_fit=True, texts=pool)
    plain_pool, plain_val, plain_n = plain.ngram_view(train, targets, 3, val, val_targets)
    cross_pool, cross_val, cross_n = cross.ngram_view(train, targets, 3, val, val_targets)
    # the validation documents are scored by the fit that did not see them, so the temperature is fitted fairly
    assert np.array_equal(cross_val, plain_val) and (plain_n, cross_n) == (12, 18)
    # and the pool by the fit that learnt them too
    everything = NgramClassifier().fit(train + val, np.concatenate([targets, val_targets]), 3)
    assert np.array_equal(cross_pool, everything.predict_proba(pool)) and not np.allclose(cross_pool, plain_pool)
    # after a round, both fits learn its pseudo-labels as well
    learnt = {"documents": [0, 1, 2], "labels": [0, 1, 2]}
    assert cross.ngram_view(train, targets, 3, val, val_targets, learnt)[2] == 21


def test_soft_targets_weigh_and_average_as_class_ids_do():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32), num_labels=3).eval()
    ids, labels = torch.randint(5, 50, (4, 7)), torch.tensor([0, 2, 2, 1])
    weights = torch.tensor([0.5, 2.0, 1.0])
    for w in (None, weights):  # one-hot probabilities are the class ids, weights and all
        hard, _ = model(ids, labels=labels, class_weights=w)
        soft, _ = model(ids, labels=torch.eye(3)[labels], class_weights=w)
        torch.testing.assert_close(soft, hard)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.0, 0.5, 0.5], [0.3, 0.6, 0.1]])
    soft, logits = model(ids, labels=probs)  # the KL divergence: the cross-entropy less the targets' entropy
    entropy = -torch.xlogy(probs, probs).sum(-1)
    torch.testing.assert_close(soft, (-(probs * logits.log_softmax(-1)).sum(-1) - entropy).mean())
    # the prior: the best constant answer is the targets' mean, and it scores their KL from it
    mean = probs.double().mean(0)
    expected = (torch.xlogy(probs.double(), probs.double()) - probs.double() * mean.log()).sum(-1).mean()
    assert soft_prior_loss(probs.numpy(), None) == pytest.approx(float(expected))
    assert soft_prior_loss(np.eye(3)[[0, 2, 2, 1]], weights) == pytest.approx(prior_loss([0, 2, 2, 1], 3, weights))


def test_soft_targets_teach_students_the_teachers_probabilities(trained, corpus, tmp_path):
    train, pool = corpus
    for name in ("a", "b"):
        finetune(train, trained / "base", tmp_path / name, FinetuneConfig.of(**COMMON), run=RunOptions(quiet=True),
                 self_training=SelfTraining([pool], rounds=1, soft_targets=True))
    assert_bitwise_equal_weights(tmp_path / "a", tmp_path / "b")
    args = json.loads((tmp_path / "a" / "training_args.json").read_text())
    assert args["self_training"]["soft_targets"]
    # the probabilities the student learnt are the pooled teacher's, one row per pseudo-label, each a distribution
    state = json.loads((tmp_path / "a" / "self_training.json").read_text())
    finetune(train, trained / "base", tmp_path / "hard", FinetuneConfig.of(**COMMON), run=RunOptions(quiet=True),
             self_training=SelfTraining([pool], rounds=1))
    learnt = json.loads((tmp_path / "hard" / "self_training.json").read_text())["learnt"]
    # the same teacher chose the same documents and labels
    assert {key: state["learnt"][key] for key in ("documents", "labels")} == learnt
    probabilities = np.array(state["learnt"]["probabilities"])
    assert probabilities.shape == (len(learnt["documents"]), 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1, rtol=1e-6)
    assert (probabilities.argmax(-1) == learnt["labels"]).all() and (probabilities.max(-1) < 1).any()
    # and it learnt something else than the hard labels would have taught
    soft_losses = [r["loss"] for r in records(tmp_path / "a") if r.get("round") == 1 and "loss" in r]
    hard_losses = [r["loss"] for r in records(tmp_path / "hard") if r.get("round") == 1 and "loss" in r]
    assert len(soft_losses) == len(hard_losses) and soft_losses != hard_losses


def test_labelled_documents_are_not_pseudo_labelled(trained, corpus, tmp_path):
    train, pool = corpus
    both = tmp_path / "both.jsonl"  # the pool plus every labelled text again, and a repeated text
    lines = pool.read_text().splitlines()
    labelled = [json.dumps({"text": t}) for t in
                [line.rsplit(",", 1)[0].strip('"') for line in train.read_text().splitlines()[1:]]]
    both.write_text("\n".join(lines + labelled + lines[:5]) + "\n", encoding="utf-8")
    st = SelfTraining([both], rounds=1)
    finetune(train, trained / "base", tmp_path / "st", FinetuneConfig.of(**COMMON), run=RunOptions(quiet=True),
             self_training=st)
    counts = json.loads((tmp_path / "st" / "training_args.json").read_text())["self_training"]
    assert counts["pool"] == 240 and counts["dropped_labelled_or_repeated"] == 60 + 5


def test_an_interrupted_round_resumes_to_the_uninterrupted_result(trained, corpus, tmp_path):
    train, pool = corpus
    common = [train, "--base", trained / "base", "--epochs", "2", "--batch-size", "16", "--seq-len", "32",
              "--val-fraction", "0.2", "--unlabelled", pool, "--rounds", "2", "--save-every", "3", "--quiet"]
    run_to_end("finetune", *common, "--out", tmp_path / "ref")
    out = tmp_path / "clf"
    args = ["finetune", *common, "--out", out]
    # round 1 trains on 48 labelled + 120 pseudo-labelled documents: 11 steps an epoch; killed inside it
    stopped = start_and_stop_at(args, out / "checkpoints" / "step-00000006", signal.SIGKILL)
    assert stopped.returncode == -signal.SIGKILL
    state = json.loads((out / "self_training.json").read_text())
    run_to_end(*args, "--resume")
    assert_bitwise_equal_weights(out, tmp_path / "ref")
    final = [json.loads((d / "self_training.json").read_text()) for d in (out, tmp_path / "ref")]
    assert [r["pseudo_labels"] for r in final[0]["rounds"]] == [r["pseudo_labels"] for r in final[1]["rounds"]]
    assert state["rounds"] == [] or state["rounds"][0]["round"] == 0  # it was killed in round 0 or 1, not after
    steps = [(r["round"], r["step"]) for r in records(out) if "loss" in r]
    assert steps == [(r["round"], r["step"]) for r in records(tmp_path / "ref") if "loss" in r]


def test_what_self_training_cannot_do_is_one_line(trained, corpus, tmp_path, capsys):
    train, pool = corpus
    base = ["finetune", str(train), "--base", str(trained / "base"), "--out", str(tmp_path / "x"), "--quiet"]
    assert_one_line_error(capsys, [*base, "--unlabelled", str(tmp_path / "missing.txt")], "missing.txt")
    # even the default number of rounds, asked for without --unlabelled, is a mistake worth saying
    assert_one_line_error(capsys, [*base, "--rounds", str(SELF_TRAINING_ROUNDS)], "--rounds is for self-training")
    assert_one_line_error(capsys, [*base, "--no-ngram-teacher"], "--no-ngram-teacher is for self-training")
    assert_one_line_error(capsys, [*base, "--soft-targets"], "--soft-targets is for self-training")
    assert_one_line_error(capsys, [*base, "--ngram-cross-fit"], "--ngram-cross-fit is for self-training")
    assert_one_line_error(capsys, [*base, "--unlabelled", str(pool), "--rounds", "0"], "--rounds must be")
    only_labelled = tmp_path / "only.csv"
    only_labelled.write_text(train.read_text())
    assert_one_line_error(capsys, [*base, "--unlabelled", str(only_labelled)], "no documents besides the labelled")
    multi = tmp_path / "multi.csv"
    multi.write_text("text,label\n" + "".join(f"invoice {i} toner,{'a|b' if i % 2 else 'a'}\n" for i in range(20)))
    assert_one_line_error(capsys, ["finetune", str(multi), "--base", str(trained / "base"), "--out",
                                        str(tmp_path / "m"), "--multi-label", "--unlabelled", str(pool)],
                          "cannot be used with --multi-label")
    with pytest.raises(TinyLMError, match="--rounds must be at least 1"):
        SelfTraining([pool], rounds=0)


def test_a_students_noise_masks_tokens_but_cls_sep_and_padding_the_same_way_every_time():
    from tinylm.finetune import ClassificationBatches

    sequences = [[2] + list(range(10, 10 + n)) + [3] for n in (3, 30, 12, 50)]
    batches = ClassificationBatches(sequences, [0, 1, 0, 1], batch_size=4, seed=0, pad_id=0, noise=(0.15, 4))
    plain = ClassificationBatches(sequences, [0, 1, 0, 1], batch_size=4, seed=0, pad_id=0)
    noisy, clean = batches(0)[0].inputs, plain(0)[0].inputs
    masked = noisy["input_ids"] != clean["input_ids"]
    assert torch.equal(noisy["input_ids"][masked], torch.full((int(masked.sum()),), 4))
    assert 0.05 < masked.sum() / (clean["attention_mask"].sum() - 8) < 0.3  # about 15% of the 95 inner tokens
    assert (clean["input_ids"][masked] >= 10).all()  # never [CLS], [SEP] or padding
    assert torch.equal(batches(0)[0].inputs["input_ids"], noisy["input_ids"])  # a resumed step draws the same
    assert not torch.equal(batches(1)[0].inputs["input_ids"], noisy["input_ids"])

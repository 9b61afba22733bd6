"""The quality benchmark's quick version: the real CLI pipeline on TREC under tiny budgets."""

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT, SHARED


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_electra_probe_writes_a_base_that_fine_tuning_reads(trained, tmp_path):
    import tinylm.pretrain
    from tinylm.checkpoint import load_checkpoint
    from tinylm.config import FinetuneConfig, RunOptions
    from tinylm.finetune import finetune
    from tinylm.model import BertForMaskedLM

    probe = load_benchmark("electra_probe")
    summary = probe.main([str(trained / "train.csv"), "--tokenizer", str(trained / "tokenizer"),
                          "--out", str(tmp_path / "base"), "--minutes", "0.02"])
    assert summary["steps"] > 0 and probe.ElectraPretraining.detection_weight == 50.0
    assert tinylm.pretrain.BertForMaskedLM is BertForMaskedLM  # the patch is undone
    base, _, _ = load_checkpoint(tmp_path / "base", expect_kind="mlm")
    assert base.cls.predictions.decoder.weight is base.bert.embeddings.word_embeddings.weight
    finetune(trained / "train.csv", tmp_path / "base", tmp_path / "clf", FinetuneConfig(epochs=1, batch_size=8,
             seq_len=32), run=RunOptions(quiet=True))
    assert (tmp_path / "clf" / "model.safetensors").is_file()


def test_the_cnn_probe_trains_convolutions_through_finetuning_and_undoes_its_patch(trained, tmp_path):
    import tinylm.finetune
    from tinylm.checkpoint import read_tensors
    from tinylm.model import BertForSequenceClassification

    probe = load_benchmark("cnn_probe")
    for flags in ([], ["--beside"]):
        out = tmp_path / f"clf{len(flags)}"
        summary = probe.main([str(trained / "train.csv"), "--base", str(trained / "base"), "--out", str(out),
                              "--epochs", "2", *flags])
        assert tinylm.finetune.BertForSequenceClassification is BertForSequenceClassification  # the patch is undone
        assert summary["steps"] > 0 and 0 <= summary["best"]["val_accuracy"] <= 1
        tensors = read_tensors(out / "model.safetensors")
        assert {f"convs.{i}.weight" for i in range(3)} <= set(tensors)
        hidden = tensors["bert.embeddings.word_embeddings.weight"].shape[1]
        assert tensors["classifier.weight"].shape[1] == 300 + hidden * bool(flags)  # the encoder's states beside


def test_labelled_sample_is_stratified_and_repeatable(tmp_path):
    quality = load_benchmark("quality")
    rows = [(f"doc {i}", "rare" if i % 10 == 0 else "common") for i in range(1000)]
    train = tmp_path / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    first = quality.labelled_sample(train, 50, tmp_path / "a.csv")
    texts, labels = quality.read_csv(first)
    assert Counter(labels) == {"common": 45, "rare": 5}  # each class in its share of train
    assert len(set(texts)) == 50 and set(texts) <= {text for text, _ in rows}
    assert all(dict(rows)[text] == label for text, label in zip(texts, labels))  # rows keep their own labels
    assert quality.read_csv(quality.labelled_sample(train, 50, tmp_path / "b.csv")) == (texts, labels)
    assert Counter(quality.read_csv(quality.labelled_sample(train, 3, tmp_path / "c.csv"))[1])["rare"] == 1
    for n in (7, 99, 101, 999):  # shares that do not round to whole rows still add up to n
        assert len(quality.read_csv(quality.labelled_sample(train, n, tmp_path / f"n{n}.csv"))[1]) == n
    assert quality.labelled_sample(train, 5000, tmp_path / "d.csv") == train  # asking for all of it: train itself


@pytest.mark.skipif(not (SHARED / "trec").is_dir(), reason="../shared/datasets is not here")
def test_quality_benchmark_runs_all_columns_on_a_budget(tmp_path):
    quality = load_benchmark("quality")
    (result,) = quality.main(["--datasets", "trec", "--pretrain-minutes", "0.1", "--finetune-minutes", "0.1",
                              "--preset", "tiny", "--no-tfidf", "--workdir", str(tmp_path), "--seeds", "2",
                              "--labelled", "3000"])
    for column in ("tinylm", "no_pretraining"):
        assert 1 / 6 < result[column]["accuracy"] <= 1 and 0 < result[column]["macro_f1"] <= 1  # above chance
        runs = result[column]["runs"]  # two fine-tuning seeds from the same base, averaged
        assert len(runs) == 2 and result[column]["accuracy"] == pytest.approx((runs[0]["accuracy"] + runs[1]["accuracy"]) / 2)
    assert (tmp_path / "trec" / "clf-tinylm-seed1" / "model.safetensors").is_file()
    assert (tmp_path / "trec" / "random" / "model.safetensors").is_file()
    # fine-tuning read the labels of 3,000 documents only; pretraining read all of train (5,452 questions)
    assert result["labelled"] == 3000
    args = json.loads((tmp_path / "trec" / "clf-tinylm" / "training_args.json").read_text())
    assert args["train_data"] == str(tmp_path / "trec" / "labelled.csv")
    base = json.loads((tmp_path / "trec" / "base" / "training_args.json").read_text())
    assert [Path(path).resolve() for path in base["data"]] == [(SHARED / "trec" / "train.csv").resolve()]
    assert 0 < result["pretraining"]["held_out_loss"] < 12  # scored on rows held out of pretraining

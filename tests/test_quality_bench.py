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


def ninety_ten(tmp_path: Path) -> tuple[list[tuple[str, str]], Path]:
    """1,000 documents, one in ten of the rare class, as a train CSV."""
    rows = [(f"doc {i}", "rare" if i % 10 == 0 else "common") for i in range(1000)]
    train = tmp_path / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("text", "label"), *rows])
    return rows, train


def test_labelled_sample_is_stratified_and_repeatable(tmp_path):
    quality = load_benchmark("quality")
    rows, train = ninety_ten(tmp_path)
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


def test_dev_split_holds_out_a_stratified_sample_that_nothing_else_reads(tmp_path):
    quality = load_benchmark("quality")
    rows, train = ninety_ten(tmp_path)
    rest, dev = quality.dev_split(train, 200, tmp_path / "split")
    (rest_texts, rest_labels), (dev_texts, dev_labels) = quality.read_csv(rest), quality.read_csv(dev)
    assert Counter(dev_labels) == {"common": 180, "rare": 20}
    assert not set(rest_texts) & set(dev_texts) and len(rest_texts) + len(dev_texts) == 1000
    assert sorted(zip(rest_texts + dev_texts, rest_labels + dev_labels)) == sorted(rows)
    assert quality.read_csv(quality.dev_split(train, 200, tmp_path / "again")[1]) == (dev_texts, dev_labels)
    with pytest.raises(SystemExit, match="hold out fewer"):
        quality.dev_split(train, 1000, tmp_path / "all")


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

"""The quality benchmark's quick version: the real CLI pipeline on TREC under tiny budgets."""

import importlib.util

import pytest

from conftest import ROOT, SHARED


@pytest.mark.skipif(not (SHARED / "trec").is_dir(), reason="../shared/datasets is not here")
def test_quality_benchmark_runs_all_columns_on_a_budget(tmp_path):
    spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    (result,) = quality.main(["--datasets", "trec", "--pretrain-minutes", "0.1", "--finetune-minutes", "0.1",
                              "--preset", "tiny", "--no-tfidf", "--workdir", str(tmp_path), "--seeds", "2"])
    for column in ("tinylm", "no_pretraining"):
        assert 1 / 6 < result[column]["accuracy"] <= 1 and 0 < result[column]["macro_f1"] <= 1  # above chance
        runs = result[column]["runs"]  # two fine-tuning seeds from the same base, averaged
        assert len(runs) == 2 and result[column]["accuracy"] == pytest.approx((runs[0]["accuracy"] + runs[1]["accuracy"]) / 2)
    assert (tmp_path / "trec" / "clf-tinylm-seed1" / "model.safetensors").is_file()
    assert (tmp_path / "trec" / "random" / "model.safetensors").is_file()
    assert 0 < result["pretraining"]["held_out_loss"] < 12  # scored on rows held out of pretraining

"""The CUDA path, where a GPU is present (skipped elsewhere; CI has none): the same loss curve as the CPU and the
written-out reference in fp32, bf16 close to it, `--device auto` picking the GPU and bf16 with no flag, and
checkpoints that move between GPU and CPU machines both ways, and self-training with the GPU teaching."""

import json

import numpy as np
import pytest
import torch

from conftest import DATA, write_labelled_csv
from test_errors import run_cli
from test_fast_path import ReferenceMLM, fresh, loss_curve
from test_self_training import write_unlabelled
from tinylm.checkpoint import load_checkpoint
from tinylm.config import FinetuneConfig, RunOptions
from tinylm.finetune import finetune
from tinylm.self_training import SelfTraining

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_fp32_loss_curve_on_cuda_equals_the_cpu_and_the_reference(tmp_path):
    cuda = loss_curve(fresh(), tmp_path, "cuda", steps=100, device="cuda")
    cpu = loss_curve(fresh(), tmp_path, "cpu", steps=100)
    reference = loss_curve(ReferenceMLM(fresh()), tmp_path, "reference", steps=100, device="cuda")
    assert cuda[-1] < cuda[0] - 0.5  # it learns
    assert np.abs(cuda - cpu).max() < 1e-3, np.abs(cuda - cpu).max()
    assert np.abs(cuda - reference).max() < 1e-3, np.abs(cuda - reference).max()


def test_bf16_loss_curve_on_cuda_stays_close_to_fp32(tmp_path):
    fp32 = loss_curve(fresh(), tmp_path, "fp32", steps=100, device="cuda")
    bf16 = loss_curve(fresh(), tmp_path, "bf16", steps=100, precision="bf16", device="cuda")
    assert np.abs(fp32 - bf16).max() < 0.1 and abs(fp32[-10:].mean() - bf16[-10:].mean()) < 0.05


def test_pipeline_picks_the_gpu_and_its_checkpoints_move_between_gpu_and_cpu(capsys, tmp_path):
    corpus = DATA / "corpus.jsonl"
    code, _, err = run_cli(capsys, "tokenize", corpus, "--out", tmp_path / "tok", "--vocab-size", "2000")
    assert code in (0, None), err
    code, out, err = run_cli(capsys, "pretrain", corpus, "--tokenizer", tmp_path / "tok", "--out", tmp_path / "gpu",
                             "--preset", "tiny", "--max-steps", "60")
    assert code in (0, None), err
    assert "bf16 on cuda" in out + err  # no flag needed: auto picks the GPU and its native bf16
    code, _, err = run_cli(capsys, "pretrain", corpus, "--tokenizer", tmp_path / "tok", "--out", tmp_path / "cpu",
                           "--preset", "tiny", "--max-steps", "10", "--device", "cpu", "--quiet")
    assert code in (0, None), err

    # A base written on the GPU loads on the CPU and computes the same logits there (fp32).
    model, _, _ = load_checkpoint(tmp_path / "gpu", expect_kind="mlm")
    ids = torch.randint(5, 2000, (4, 64), generator=torch.Generator().manual_seed(0))
    on_cpu = model.eval()(ids)
    on_gpu = model.cuda()(ids.cuda()).cpu()
    assert (on_cpu - on_gpu).norm() / on_cpu.norm() < 1e-4

    # Fine-tuning from a GPU base on the CPU, and from a CPU base on the GPU; eval runs on the CPU.
    for base, device in (("gpu", "cpu"), ("cpu", "cuda")):
        out_dir = tmp_path / f"clf-{base}-base-on-{device}"
        code, _, err = run_cli(capsys, "finetune", DATA / "train.csv", "--base", tmp_path / base, "--out", out_dir,
                               "--epochs", "6", "--lr", "2e-3", "--seq-len", "256", "--device", device, "--quiet")
        assert code in (0, None), err
        code, out, err = run_cli(capsys, "eval", out_dir, DATA / "test.csv", "--json")
        assert code in (0, None), err
        assert json.loads(out)["accuracy"] > 0.125 + 0.3, (base, device, out)  # 8 balanced classes


def test_self_training_runs_on_the_gpu_with_both_teachers(trained, tmp_path):
    """`finetune --unlabelled` on CUDA: the transformer teaches from the GPU, the n-gram classifier from the CPU and
    reads exactly as on a CPU machine (the same split, the same features); the kept point is never below round 0."""
    train = write_labelled_csv(tmp_path / "train.csv", n=60, seed=3)
    pool = write_unlabelled(tmp_path / "pool.jsonl", 240, seed=4)
    cfg = FinetuneConfig.of(epochs=3, batch_size=16, seq_len=32, val_fraction=0.2)
    states = {}
    for device in ("cuda", "cpu"):
        finetune(train, trained / "base", tmp_path / device, cfg, run=RunOptions(quiet=True, device=device),
                 self_training=SelfTraining([pool], rounds=2))
        states[device] = json.loads((tmp_path / device / "self_training.json").read_text())
    gpu, cpu = states["cuda"], states["cpu"]
    assert gpu["finished"] and [r["round"] for r in gpu["rounds"]] == [0, 1, 2]
    assert gpu["rounds"][-1]["best_after"]["val_accuracy"] >= gpu["rounds"][0]["best_after"]["val_accuracy"]
    for r in gpu["rounds"][1:]:
        assert r["pseudo_labels"] > 0 and set(r["teachers"]) == {"transformer", "ngrams"}
    # round 1's n-gram classifier has learnt from the labelled documents alone: the same on both machines
    assert gpu["rounds"][1]["teachers"]["ngrams"] == cpu["rounds"][1]["teachers"]["ngrams"]

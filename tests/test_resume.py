"""Reliability: kill -9 / SIGINT / SIGTERM and --resume give bitwise the weights of an uninterrupted run; failed
saves, non-finite values and mismatched resumes stop with one clear line and keep the last good checkpoint."""

import errno
import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from conftest import DATA, ROOT, write_labelled_csv
from test_errors import assert_one_line_error
from tinylm.errors import TinyLMError

PRETRAIN = ["--preset", "tiny", "--max-steps", "60", "--save-every", "10", "--keep-checkpoints", "2", "--quiet"]


def tinylm(*args) -> list[str]:
    return [sys.executable, "-m", "tinylm", *map(str, args)]


def run_to_end(*args):
    done = subprocess.run(tinylm(*args), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def start_and_stop_at(args, checkpoint: Path, sig=signal.SIGKILL, timeout=300) -> subprocess.CompletedProcess:
    """Start a run, wait until `checkpoint` is written, then send `sig`."""
    process = subprocess.Popen(tinylm(*args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not checkpoint.is_dir():
        assert process.poll() is None, f"the run ended before {checkpoint} appeared: {process.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def assert_bitwise_equal_weights(a: Path, b: Path):
    """Every tensor identical bit for bit (the file bytes differ: safetensors writes its metadata in hash order)."""
    from safetensors import safe_open

    with safe_open(str(a / "model.safetensors"), "pt") as fa, safe_open(str(b / "model.safetensors"), "pt") as fb:
        assert sorted(fa.keys()) == sorted(fb.keys())
        for name in fa.keys():
            x, y = fa.get_tensor(name), fb.get_tensor(name)
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert torch.equal(x.view(torch.int32), y.view(torch.int32)), name


def losses(run_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


@pytest.fixture(scope="module")
def reference(trained, tmp_path_factory):
    """An uninterrupted 60-step pretraining run (subprocess, like the interrupted ones: same threads)."""
    out = tmp_path_factory.mktemp("ref") / "base"
    run_to_end("pretrain", DATA / "corpus.jsonl", "--tokenizer", trained / "tokenizer", "--out", out, *PRETRAIN)
    return out


def test_pretrain_killed_and_resumed_is_bitwise_identical(trained, reference, tmp_path):
    out = tmp_path / "base"
    args = ["pretrain", DATA / "corpus.jsonl", "--tokenizer", trained / "tokenizer", "--out", out, *PRETRAIN]
    killed = start_and_stop_at(args, out / "checkpoints" / "step-00000020")
    assert killed.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()  # it really died mid-run
    resumed = run_to_end(*args, "--resume")
    assert "resuming from" in resumed.stderr
    assert_bitwise_equal_weights(out, reference)
    assert losses(out) == losses(reference)  # the log was cut back to the checkpoint, not duplicated
    assert not (out / "checkpoints").exists()  # a finished run keeps only its hand-off model


def test_sigint_saves_exits_130_and_resumes_exactly(trained, reference, tmp_path):
    out = tmp_path / "base"
    args = ["pretrain", DATA / "corpus.jsonl", "--tokenizer", trained / "tokenizer", "--out", out, *PRETRAIN]
    stopped = start_and_stop_at(args, out / "checkpoints" / "step-00000010", signal.SIGINT)
    assert stopped.returncode == 130, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stopped by SIGINT after step") and "--resume" in last, stopped.stderr
    assert "Traceback" not in stopped.stderr
    kept = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert 1 <= len(kept) <= 2 and kept[-1] > "step-00000010"  # saved at the step it stopped; keeps the last 2
    run_to_end(*args, "--resume")
    assert_bitwise_equal_weights(out, reference)


def test_finetune_sigterm_then_kill_then_resume_is_bitwise_identical(trained, tmp_path):
    data = write_labelled_csv(tmp_path / "train.csv", n=600, seed=1)
    common = [data, "--base", trained / "base", "--epochs", "4", "--batch-size", "16", "--seq-len", "64",
              "--save-every", "5", "--quiet"]
    run_to_end("finetune", *common, "--out", tmp_path / "ref")
    out = tmp_path / "clf"
    args = ["finetune", *common, "--out", out]
    stopped = start_and_stop_at(args, out / "checkpoints" / "step-00000010", signal.SIGTERM)
    assert stopped.returncode == 143, stopped.stderr
    killed = start_and_stop_at([*args, "--resume"], out / "checkpoints" / "step-00000040")
    assert killed.returncode == -signal.SIGKILL
    run_to_end(*args, "--resume")
    assert_bitwise_equal_weights(out, tmp_path / "ref")
    best = [json.loads((d / "training_args.json").read_text())["best"] for d in (out, tmp_path / "ref")]
    assert best[0] == best[1]


# ---- in-process: failed saves, NaN, resume mismatches ---------------------------------------------------------

def tiny_mlm(trained, nan_at_step: int | None = None):
    """A tiny model and batches of random tokens for the library loop: returns (model, batches)."""
    import numpy as np

    from tinylm.config import PRESETS
    from tinylm.data import PackedRows
    from tinylm.model import BertForMaskedLM
    from tinylm.pretrain import MLMBatches
    from tinylm.tokenizer import SPECIAL_TOKENS, load_tokenizer

    tokenizer = load_tokenizer(trained / "tokenizer")
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    stream = np.random.default_rng(0).integers(5, tokenizer.get_vocab_size(), 4000)
    config = PRESETS["tiny"].model
    config.vocab_size = tokenizer.get_vocab_size()
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    if nan_at_step is not None:  # a poisoned batch: the loss of that one step is NaN
        forward, calls = model.forward, []

        def poisoned(**inputs):
            calls.append(1)
            loss, logits = forward(**inputs)
            return (loss * float("nan") if len(calls) == nan_at_step else loss), logits

        model.forward = poisoned
    return model, MLMBatches(PackedRows(stream, 32, ids["[CLS]"], ids["[PAD]"]), 8, 0, ids, config.vocab_size, 0.15)


def small_run(tmp_path, trained, nan_at_step: int | None = None, **loop):
    """The tiny model through the library loop, for fault injection: returns (run, model, out)."""
    from tinylm.config import RunOptions, TrainArgs
    from tinylm.train import MetricsLog, Plan, train

    model, batches = tiny_mlm(trained, nan_at_step)
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    run = RunOptions(**{"quiet": True, **loop})
    return lambda: train(model, batches, TrainArgs(lr=1e-3), Plan(8), MetricsLog(out / "metrics.jsonl"), run,
                         out_dir=out, identity={"run": 1}), model, out


def test_a_resume_with_another_decay_is_refused_by_name_before_anything_is_loaded(trained, tmp_path):
    from tinylm.config import RunOptions, TrainArgs
    from tinylm.errors import TinyLMError
    from tinylm.train import MetricsLog, Plan, train

    out = tmp_path / "run"
    out.mkdir()

    def run(decay: float, resume: bool):
        model, batches = tiny_mlm(trained)
        return train(model, batches, TrainArgs(lr=1e-3), Plan(8, ema_decay=decay),
                     MetricsLog(out / "metrics.jsonl", resume=resume), RunOptions(quiet=True, save_every=4, resume=resume),
                     out_dir=out, identity={"train": {"ema_decay": decay}})

    run(0.0, resume=False)  # its checkpoints hold no average
    with pytest.raises(TinyLMError, match=r"--resume needs the arguments .*train.ema_decay 0.0 then, 0.9 now"):
        run(0.9, resume=True)


def test_the_epoch_end_sees_the_moving_average_and_training_goes_on_with_its_own_weights(trained, tmp_path):
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from tinylm.config import RunOptions, TrainArgs
    from tinylm.train import MetricsLog, Plan, train

    model, batches = tiny_mlm(trained)
    params = [p for p in model.parameters() if p.requires_grad]
    snapshot = lambda: [p.detach().clone() for p in params]  # noqa: E731
    history, seen = [snapshot()], {}  # the weights before training, then after every step
    hook = register_optimizer_step_post_hook(lambda *_: history.append(snapshot()))

    def on_epoch_end(epoch, step):
        seen[step] = snapshot()
        return {}

    try:
        train(model, batches, TrainArgs(lr=1e-3), Plan(40, ema_decay=0.8), MetricsLog(tmp_path / "metrics.jsonl"),
              RunOptions(quiet=True), on_validate=on_epoch_end)
    finally:
        hook.remove()
    assert len(history) == 41 and list(seen) == [40]  # MLM batches end no epoch: the last step is validated
    average = history[0]
    for step, weights in enumerate(history[1:], start=1):  # d warms up to 0.8 (reached at step 35) and stays
        d = min(0.8, (1 + step) / (10 + step))
        average = [d * a + (1 - d) * w for a, w in zip(average, weights)]
    for got, want, last in zip(seen[40], average, history[-1]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert not torch.equal(got, last)
    for p, last in zip(params, history[-1]):  # after validating, training holds its own weights again
        assert torch.equal(p.detach(), last)


def test_a_failed_save_is_one_line_and_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch):
    from tinylm import state
    from tinylm.train import LoopState, make_optimizer

    run, _, out = small_run(tmp_path, trained, save_every=2)
    real_save, calls = state.save_file, []

    def disk_fills_up(tensors, path, *a, **k):
        calls.append(path)
        if len(calls) > 3:  # the second checkpoint (3 files each) meets a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, path, *a, **k)

    monkeypatch.setattr(state, "save_file", disk_fills_up)
    with pytest.raises(TinyLMError, match=r"No space left on device; the last complete checkpoint .*step-00000002 is intact"):
        run()
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-00000002"]  # no torn temporary left behind
    monkeypatch.setattr(state, "save_file", real_save)
    _, model, _ = small_run(tmp_path / "fresh", trained) if (tmp_path / "fresh").mkdir() is None else None
    optimizer = make_optimizer(model, 1e-3, 0.01)
    restored = state.load_state(out / "checkpoints" / "step-00000002", model, optimizer, asdict(LoopState()))
    assert restored["loop"]["step"] == 2


def test_a_checkpoint_of_the_loop_before_its_redesign_is_refused_in_one_line(trained, tmp_path):
    run, _, out = small_run(tmp_path, trained, resume=True)
    old = out / "checkpoints" / "step-00000004"  # as the loop with an LR scheduler wrote it
    old.mkdir(parents=True)
    (old / "trainer_state.json").write_text(json.dumps({"counters": {"step": 4}, "run_args": {"run": 1},
                                                        "scheduler": {"last_epoch": 4}}))
    with pytest.raises(TinyLMError, match=r"step-00000004 was written by an earlier tinylm.*--overwrite"):
        run()


def test_nan_loss_stops_naming_the_step_and_the_last_good_checkpoint(trained, tmp_path):
    run, model, _ = small_run(tmp_path, trained, nan_at_step=5, save_every=2)
    with pytest.raises(TinyLMError, match=r"loss became nan at step 5.*last good checkpoint is .*step-00000004"):
        run()
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step never reached the weights


def test_on_nan_skip_drops_the_batch_and_finishes(trained, tmp_path):
    run, model, _ = small_run(tmp_path, trained, nan_at_step=3, on_nan="skip")
    summary = run()
    assert summary["steps"] == 8 and summary["skipped_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_resume_with_other_arguments_is_refused(trained, tmp_path):
    out = tmp_path / "base"
    args = ["pretrain", DATA / "corpus.jsonl", "--tokenizer", trained / "tokenizer", "--out", out, *PRETRAIN]
    start_and_stop_at(args, out / "checkpoints" / "step-00000010")
    changed = [*args, "--resume", "--lr", "0.01"]
    done = subprocess.run(tinylm(*changed), cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith("error: --resume needs the arguments"), done.stderr
    assert "train.lr 0.002 then, 0.01 now" in last and "Traceback" not in done.stderr

    (out / "checkpoints" / "step-00000010" / "optimizer.safetensors").write_bytes(b"\0" * 100)
    done = subprocess.run(tinylm(*args, "--resume"), cwd=ROOT, capture_output=True, text=True, timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and "optimizer.safetensors is corrupt" in last and "Traceback" not in done.stderr


def test_a_damaged_token_cache_is_encoded_again(trained, tmp_path, token_cache):
    from tinylm.cli import main

    data = write_labelled_csv(tmp_path / "d.csv", seed=7)
    args = ["pretrain", data, "--tokenizer", trained / "tokenizer", "--preset", "tiny", "--max-steps", "2",
            "--batch-size", "4", "--seq-len", "32", "-q", "--cache-dir", tmp_path / "cache"]
    with pytest.raises(SystemExit):
        main([str(a) for a in [*args, "--out", tmp_path / "a"]])
    (entry,) = (tmp_path / "cache").iterdir()
    (entry / "tokens.bin").write_bytes(b"\1\2\3")  # torn: not the size meta.json records
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in [*args, "--out", tmp_path / "b"]])
    assert done.value.code in (0, None)
    assert_bitwise_equal_weights(tmp_path / "a", tmp_path / "b")


def test_an_extremely_long_line_is_one_document(tmp_path):
    from tinylm.data import pack_documents, read_texts
    from tinylm.tokenizer import train_tokenizer

    (tmp_path / "long.txt").write_text("invoice total " * 300_000 + "\nshort one\n")  # a 4 MB line
    texts = read_texts(tmp_path / "long.txt")
    assert len(texts) == 2 and len(texts[0]) == 14 * 300_000
    tokenizer = train_tokenizer(texts, vocab_size=60)
    rows = pack_documents(tokenizer, texts, seq_len=128)
    assert rows.shape[1] == 128 and rows.shape[0] > 600_000 // 127
    assert int((rows == tokenizer.token_to_id("[SEP]")).sum()) == 2  # still two documents


def test_resume_of_a_finished_run_and_resume_with_overwrite_are_refused(capsys, trained):
    base = ["finetune", trained / "train.csv", "--base", trained / "base", "--out", trained / "classifier"]
    assert_one_line_error(capsys, [*base, "--resume"], "has no checkpoint to resume from")
    assert_one_line_error(capsys, [*base, "--resume", "--overwrite"], "give one of them")


# ---- security -------------------------------------------------------------------------------------------------

def test_the_whole_pipeline_runs_with_the_network_cut(capsys, tmp_path, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("tinylm tried to use the network")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from tinylm.cli import main

    data = write_labelled_csv(tmp_path / "d.csv")
    steps = [
        ["tokenize", data, "--out", tmp_path / "tok", "--vocab-size", "200"],
        ["pretrain", data, "--tokenizer", tmp_path / "tok", "--out", tmp_path / "base", "--preset", "tiny",
         "--max-steps", "3", "--batch-size", "4", "--seq-len", "32", "-q"],
        ["finetune", data, "--base", tmp_path / "base", "--out", tmp_path / "clf", "--epochs", "1", "--seq-len", "32", "-q"],
        ["eval", tmp_path / "clf", data],
        ["predict", tmp_path / "clf", data, "--out", tmp_path / "p.jsonl"],
        ["export", tmp_path / "base", tmp_path / "hf"],
        ["inspect", tmp_path / "clf"],
    ]
    for argv in steps:
        with pytest.raises(SystemExit) as done:
            main([str(a) for a in argv])
        assert done.value.code in (0, None), (argv[0], capsys.readouterr().err)


def test_no_pickle_is_ever_loaded():
    """Weights, optimizer state and RNG states are safetensors; configs are JSON. No unpickling anywhere."""
    source = "\n".join(p.read_text() for p in (ROOT / "tinylm").glob("*.py"))
    for forbidden in ("torch.load(", "import pickle", "pickle.load", "weights_only=False", "np.load("):
        assert forbidden not in source, forbidden

"""Every user-facing failure: one line on stderr starting with `error:`, a non-zero exit, no traceback."""

import json
import shutil

import pytest

from conftest import write_labelled_csv
from tinylm.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def assert_one_line_error(capsys, args, match):
    code, _, err = run_cli(capsys, *args)
    assert code not in (0, None), err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == 1 and lines[-1] == errors[0] and errors[0].startswith("error: "), err
    assert "Traceback" not in err
    assert match in errors[0], errors[0]


def copy_ckpt(trained, name, tmp_path):
    return shutil.copytree(trained / name, tmp_path / name)


CASES = {
    # name: (setup(tmp_path, trained) -> argv, expected fragment)
    "missing path": (lambda t, k: ["tokenize", t / "nope.txt", "--out", t / "tok"], "nope.txt does not exist"),
    "empty file": (lambda t, k: (t / "e.txt").write_text("") and [] or ["tokenize", t / "e.txt", "--out", t / "tok"],
                   "no text found"),
    "empty folder": (lambda t, k: (t / "d").mkdir() or ["tokenize", t / "d", "--out", t / "tok"], "has no .txt files"),
    "non-utf8": (lambda t, k: (t / "l.txt").write_bytes(b"Gr\xfc\xdfe\n") and ["tokenize", t / "l.txt", "--out", t / "tok"],
                 "--encoding"),
    "whitespace docs": (lambda t, k: (t / "w.txt").write_text("   \n\t\n") and ["tokenize", t / "w.txt", "--out", t / "tok"],
                        "no text found"),
    "csv without column": (lambda t, k: (t / "c.csv").write_text("body\nx\n") and ["tokenize", t / "c.csv", "--out", t / "tok"],
                           "no column 'text' (columns: body)"),
    "malformed csv row": (lambda t, k: (t / "m.csv").write_text('text,label\na,b\n"c,d\n') and
                          ["finetune", t / "m.csv", "--base", k / "base", "--out", t / "o"], "m.csv:"),
    "malformed jsonl": (lambda t, k: (t / "j.jsonl").write_text('{"text": "a"}\n{oops}\n') and
                        ["tokenize", t / "j.jsonl", "--out", t / "tok"], "j.jsonl:2: not valid JSON"),
    "empty label": (lambda t, k: (t / "l.csv").write_text("text,label\na,x\nb,\n") and
                    ["finetune", t / "l.csv", "--base", k / "base", "--out", t / "o"], "l.csv:3: empty label"),
    "one class": (lambda t, k: (t / "o.csv").write_text("text,label\na,x\nb,x\n") and
                  ["finetune", t / "o.csv", "--base", k / "base", "--out", t / "o"], "only one label"),
    "label column missing": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                           "--label-column", "category"], "no column 'category'"),
    "unseen eval label": (lambda t, k: (t / "u.csv").write_text("text,label\na,office\nb,hardware\n") and
                          ["eval", k / "classifier", t / "u.csv"], "'hardware'"),
    "unseen val label": (lambda t, k: (t / "v.csv").write_text("text,label\na,office\nb,hardware\n") and
                         ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o", "--val", t / "v.csv"],
                         "'hardware'"),
    "classifier as base": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "classifier", "--out", t / "o"],
                           "is a classifier checkpoint, but this command needs a base"),
    "base as classifier": (lambda t, k: ["predict", k / "base", k / "train.csv"], "needs a classifier checkpoint"),
    "not a checkpoint": (lambda t, k: ["eval", k / "tokenizer", k / "train.csv"], "has no config.json"),
    "missing checkpoint": (lambda t, k: ["predict", t / "nowhere", k / "train.csv"], "does not exist"),
    "missing weights": (lambda t, k: (copy_ckpt(k, "classifier", t) / "model.safetensors").unlink() or
                        ["eval", t / "classifier", k / "train.csv"], "model.safetensors is missing"),
    "corrupt weights": (lambda t, k: (copy_ckpt(k, "classifier", t) / "model.safetensors").write_bytes(b"\x00" * 64) and
                        ["eval", t / "classifier", k / "train.csv"], "is corrupt or not a safetensors file"),
    "truncated weights": (lambda t, k: truncate(copy_ckpt(k, "classifier", t) / "model.safetensors") or
                          ["predict", t / "classifier", k / "train.csv"], "corrupt"),
    "config wrong type": (lambda t, k: edit_config(copy_ckpt(k, "classifier", t), hidden_size="64") or
                          ["eval", t / "classifier", k / "train.csv"], "hidden_size must be of type int"),
    "config heads": (lambda t, k: edit_config(copy_ckpt(k, "base", t), num_attention_heads=3) or
                     ["finetune", k / "train.csv", "--base", t / "base", "--out", t / "o"], "not divisible"),
    "config shape mismatch": (lambda t, k: edit_config(copy_ckpt(k, "base", t), intermediate_size=128) or
                              ["finetune", k / "train.csv", "--base", t / "base", "--out", t / "o"], "has shape"),
    "vocab mismatch": (lambda t, k: shutil.copy(other_tokenizer(t), copy_ckpt(k, "classifier", t) / "tokenizer.json") and
                       ["eval", t / "classifier", k / "train.csv"], "do not belong together"),
    "seq-len too long": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                       "--seq-len", "4096"], "exceeds the model's max_position_embeddings"),
    "pretrain seq-len too long": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out",
                                                t / "o", "--preset", "tiny", "--seq-len", "999"], "max_position_embeddings"),
    "zero batch size": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o",
                                      "--preset", "tiny", "--batch-size", "0"], "--batch-size must be positive"),
    "negative lr": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o", "--lr", "-1"],
                    "--lr must be positive"),
    "steps and epochs": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o",
                                       "--max-steps", "3", "--epochs", "1"], "not both"),
    "toml unknown key": (lambda t, k: (t / "c.toml").write_text("[train]\nlearning_rate = 1\n") and
                         ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o", "--config",
                          t / "c.toml"], "learning_rate"),
    "toml invalid": (lambda t, k: (t / "c.toml").write_text("[train\n") and
                     ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o", "--config",
                      t / "c.toml"], "is not valid TOML"),
    "unknown preset": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o",
                                     "--preset", "huge"], "'huge' is not one of 'tiny', 'mini', 'small', 'base'"),
    "no tokenizer": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", t, "--out", t / "o"], "no tokenizer at"),
    "corrupt tokenizer": (lambda t, k: (t / "tokenizer.json").write_text("{not json") and
                          ["pretrain", k / "train.csv", "--tokenizer", t, "--out", t / "o"], "not a valid tokenizer"),
    "out is a file": (lambda t, k: (t / "f").write_text("x") and
                      ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "f", "--preset", "tiny"],
                      "is a file"),
    "out not empty": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", k / "tokenizer"],
                      "pass --overwrite"),
    "predict bad extension": (lambda t, k: ["predict", k / "classifier", k / "train.csv", "--out", t / "p.xlsx"],
                              "use a .jsonl or .csv"),
    "unknown precision": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                        "--precision", "fp8"], "'fp8' is not one of 'auto', 'fp32', 'bf16'"),
    "vocab too small": (lambda t, k: ["tokenize", k / "train.csv", "--out", t / "tok", "--vocab-size", "3"],
                        "--vocab-size must be at least"),
    "zero save-every": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o",
                                      "--preset", "tiny", "--save-every", "0"], "--save-every must be positive"),
    "no checkpoints kept": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                          "--keep-checkpoints", "0"], "--keep-checkpoints must be at least 1"),
    "unknown class weights": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                            "--class-weights", "sometimes"], "'sometimes' is not one of 'none', 'balanced'"),
    "unknown long-docs": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                        "--long-docs", "split"], "'split' is not one of 'truncate', 'windows'"),
    "negative max-minutes": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                           "--max-minutes", "-1"], "--max-minutes must be positive"),
    "zero save-minutes": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o",
                                        "--preset", "tiny", "--save-minutes", "0"], "--save-minutes must be positive"),
    "pretrain seq-len 1": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o",
                                         "--preset", "tiny", "--seq-len", "1"], "--seq-len must be at least 2"),
    "cache dir is a file": (lambda t, k: (t / "f").write_text("x") and
                            ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o",
                             "--preset", "tiny", "--cache-dir", t / "f"], "cannot write the token cache"),
    "unknown nan policy": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                         "--on-nan", "ignore"], "'ignore' is not one of 'stop', 'skip'"),
    "labelled txt": (lambda t, k: (t / "p.txt").write_text("a\n") and
                     ["finetune", t / "p.txt", "--base", k / "base", "--out", t / "o"], "labelled data must be"),
    "errors bad extension": (lambda t, k: ["eval", k / "classifier", k / "train.csv", "--errors", t / "e.xlsx"],
                             "e.xlsx: use a .jsonl or .csv"),
    "errors on a base": (lambda t, k: ["eval", k / "base", k / "train.csv", "--errors", t / "e.csv"],
                         "is a base (MLM) checkpoint"),
    "eval out not json": (lambda t, k: ["eval", k / "classifier", k / "train.csv", "--out", t / "r.txt"], "use a .json"),
    "seed on a classifier": (lambda t, k: ["eval", k / "classifier", k / "train.csv", "--seed", "1"],
                             "--seed is for base (MLM) checkpoints"),
    "nothing masked": (lambda t, k: (t / "one.txt").write_text("hotel\n") and ["eval", k / "base", t / "one.txt"],
                       "no token was masked"),
    "report missing folder": (lambda t, k: ["report", t / "nowhere"], "does not exist"),
    "report no metrics": (lambda t, k: ["report", k / "tokenizer"], "has no metrics.jsonl"),
    "report empty metrics": (lambda t, k: (t / "metrics.jsonl").write_text("\n") and ["report", t], "metrics.jsonl is empty"),
    "report malformed metrics": (lambda t, k: (t / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n')
                                 and ["report", t], "metrics.jsonl:2: not valid JSON"),
    "report loss not a number": (lambda t, k: (t / "metrics.jsonl").write_text('{"step": 1, "loss": "high"}\n') and
                                 ["report", t], "metrics.jsonl:1: 'loss' must be a number"),
    "report nothing to draw": (lambda t, k: (t / "metrics.jsonl").write_text('{"tokens": 5}\n') and ["report", t],
                               "has no training records"),
    "grad-accum zero": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out", t / "o",
                                      "--preset", "tiny", "--grad-accum", "0"], "--grad-accum must be positive"),
    "finetune grad-accum negative": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                                   "--grad-accum", "-2"], "--grad-accum must be positive"),
    "finetune ema-decay one": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                             "--ema-decay", "1"], "--ema-decay must be in [0, 1), got 1"),
    "finetune dropout one": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                           "--dropout", "1"], "--dropout must be in [0, 1), got 1"),
    "finetune val-every zero": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o",
                                              "--val-every", "0"], "--val-every must be positive, got 0"),
    "pretrain masking none": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out",
                                            t / "o", "--preset", "tiny", "--mlm-probability", "0"],
                              "--mlm-probability must be in (0, 1), got 0"),
    "pretrain held out all": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out",
                                            t / "o", "--preset", "tiny", "--val-fraction", "1"],
                              "--val-fraction must be in [0, 1), got 1"),
    "pretrain unknown embedding init": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer",
                                                      "--out", t / "o", "--preset", "tiny", "--embedding-init", "glove"],
                                        "'glove' is not one of 'cooccurrence', 'random'"),
    "missing option": (lambda t, k: ["finetune", k / "train.csv", "--out", t / "o"],
                       "Missing option '--base'. (see `tinylm finetune --help`)"),
    "unknown option": (lambda t, k: ["eval", k / "classifier", k / "train.csv", "--batchsize", "8"],
                       "No such option: --batchsize"),
    "not a number": (lambda t, k: ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o", "--lr", "fast"],
                     "'--lr'"),
    "both steps and epochs": (lambda t, k: ["pretrain", k / "train.csv", "--tokenizer", k / "tokenizer", "--out",
                                            t / "o", "--max-steps", "5", "--epochs", "1"],
                              "give --max-steps or --epochs, not both"),
    "toml value out of range": (lambda t, k: (t / "c.toml").write_text("[train]\ndropout = 1.5\n") and
                                ["finetune", k / "train.csv", "--base", k / "base", "--out", t / "o", "--config",
                                 t / "c.toml"], "c.toml [train]: --dropout must be in [0, 1), got 1.5"),
    "report eval of a base": (lambda t, k: (t / "m.json").write_text('{"kind": "mlm", "perplexity": 9.0}') and
                              ["report", k / "classifier", "--eval", t / "m.json"], "is not a classifier evaluation report"),
    "report bad confusion": (lambda t, k: (t / "eval.json").write_text('{"labels": ["a", "b"], "confusion": [[1, 2]]}')
                             and shutil.copy(k / "classifier" / "metrics.jsonl", t) and ["report", t],
                             "'confusion' must be a 2 x 2 matrix"),
}


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def other_tokenizer(tmp_path):
    from tinylm.tokenizer import save_tokenizer, train_tokenizer

    (tmp_path / "other").mkdir()
    return save_tokenizer(train_tokenizer(["completely different words here"] * 5, vocab_size=50), tmp_path / "other")


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_gives_one_clear_line(case, capsys, tmp_path, trained):
    setup, match = CASES[case]
    assert_one_line_error(capsys, setup(tmp_path, trained), match)


def test_nan_loss_stops_with_the_step(capsys, tmp_path, trained):
    data = write_labelled_csv(tmp_path / "d.csv")
    assert_one_line_error(capsys, ["finetune", data, "--base", trained / "base", "--out", tmp_path / "o",
                                   "--lr", "1e30", "--quiet"], "loss became")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_device_cuda_without_a_gpu_is_one_line(command, capsys, trained):
    assert_one_line_error(capsys, [command, trained / "classifier", trained / "train.csv", "--device", "cuda"],
                          "--device cuda was asked for, but no CUDA GPU is available")


def test_nccl_without_a_gpu_is_one_line(capsys, tmp_path, trained, monkeypatch):
    monkeypatch.setenv("TINYLM_BACKEND", "nccl")
    assert_one_line_error(capsys, ["pretrain", trained / "train.csv", "--tokenizer", trained / "tokenizer", "--out",
                                   tmp_path / "o", "--preset", "tiny", "--device", "cpu"],
                          "TINYLM_BACKEND='nccl': use gloo, or nccl with CUDA GPUs")


def test_debug_shows_the_traceback(capsys, tmp_path):
    from tinylm.errors import TinyLMError
    from tinylm import cli

    try:
        with pytest.raises(TinyLMError):
            main(["--debug", "tokenize", str(tmp_path / "nope.txt"), "--out", str(tmp_path)])
    finally:
        cli.state["debug"] = False

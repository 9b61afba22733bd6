"""Continued pretraining, `tinylm pretrain DATA --init BASE`: the run starts from the base's weights (its first
loss is the base's loss, not a fresh model's), keeps its tokenizer and size, refuses what contradicts them in one
line, records the base in provenance.json, resumes from its own checkpoint, and takes a transformers BERT too."""

import json
import signal
from dataclasses import replace

import pytest
import torch

import tinylm.pretrain
from conftest import write_labelled_csv
from test_errors import assert_one_line_error, run_cli
from test_resume import assert_bitwise_equal_weights, run_to_end, start_and_stop_at
from tinylm.checkpoint import load_checkpoint
from tinylm.config import PRESETS, PretrainConfig, RunOptions
from tinylm.evaluate import evaluate_mlm
from tinylm.inspection import inspect_folder, verify_files
from tinylm.provenance import checkpoint_digest, read_manifest
from tinylm.train import host_inputs

FP32 = dict(quiet=True, precision="fp32", device="cpu")
SHORT = ["--max-steps", "3", "--batch-size", "8", "--seq-len", "32", "--precision", "fp32", "--device", "cpu", "-q"]


def first_loss(run_dir) -> float:
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["loss"]


@pytest.fixture(scope="module")
def new_text(tmp_path_factory):
    """Text the base has not seen: other documents of the same kind."""
    return write_labelled_csv(tmp_path_factory.mktemp("new") / "new.csv", n=300, seed=7)


@pytest.fixture(scope="module")
def learnt_base(trained, tmp_path_factory):
    """A tiny base trained well past the unigram plateau on the fixture's invoices (repetitive: learnt fast)."""
    out = tmp_path_factory.mktemp("learnt") / "base"
    tinylm.pretrain.pretrain([trained / "train.csv"], trained / "tokenizer", out, replace(PRESETS["tiny"].model),
                             PretrainConfig.of(max_steps=150, batch_size=16, seq_len=32, lr=3e-3), RunOptions(**FP32))
    return out


def test_the_first_loss_is_the_bases_loss_on_that_batch(learnt_base, trained, new_text, tmp_path, monkeypatch):
    seen = {}
    real_train = tinylm.pretrain.train

    def spy(model, batches, *args, **kwargs):
        seen["weights"] = {k: v.clone() for k, v in model.state_dict().items()}
        seen["batch"] = batches(0)[0]
        return real_train(model, batches, *args, **kwargs)

    monkeypatch.setattr(tinylm.pretrain, "train", spy)
    cfg = PretrainConfig.of(max_steps=2, batch_size=64, seq_len=32, log_every=1)
    continued = tinylm.pretrain.pretrain([new_text], None, tmp_path / "continued", replace(PRESETS["tiny"].model), cfg,
                                         RunOptions(**FP32), init=learnt_base)
    base, _, _ = load_checkpoint(learnt_base, expect_kind="mlm")
    for name, tensor in base.state_dict().items():  # the unigram prior and co-occurrence vectors left it alone
        assert torch.equal(seen["weights"][name], tensor), name
    with torch.no_grad():
        base_loss = base.eval()(**host_inputs(seen["batch"]))[0].item()
    assert first_loss(tmp_path / "continued") == pytest.approx(base_loss, abs=1e-5)

    tinylm.pretrain.pretrain([new_text], trained / "tokenizer", tmp_path / "scratch", replace(PRESETS["tiny"].model),
                             cfg, RunOptions(**FP32))
    scratch = first_loss(tmp_path / "scratch")  # the unigram entropy: the decoder bias starts at the prior
    held_out = evaluate_mlm(learnt_base, new_text)["cross_entropy"]
    assert first_loss(tmp_path / "continued") < scratch - 0.2  # the base learnt more than word frequencies
    assert first_loss(tmp_path / "continued") == pytest.approx(held_out, abs=0.3)
    assert continued["steps"] == 2


def test_the_manifest_records_the_base_and_its_chain(learnt_base, trained, new_text, tmp_path, capsys):
    out = tmp_path / "continued"
    code, _, err = run_cli(capsys, "pretrain", new_text, "--init", learnt_base, "--tokenizer", trained / "tokenizer",
                           "--out", out, *SHORT)  # the base's own tokenizer may be named
    assert code in (0, None), err
    manifest = read_manifest(out)
    assert manifest["kind"] == "mlm"
    [parent] = manifest["parents"]
    assert parent["role"] == "base" and parent["kind"] == "mlm" and parent["path"] == str(learnt_base)
    assert parent["sha256"] == checkpoint_digest(learnt_base)
    assert [p["role"] for p in parent["parents"]] == ["tokenizer"]
    assert manifest["config"]["base"] == str(learnt_base)
    assert json.loads((out / "training_args.json").read_text())["base"] == str(learnt_base)
    summary = inspect_folder(out)
    assert [(p["depth"], p["role"]) for p in summary["parents"]] == [(1, "base"), (2, "tokenizer")]
    verified = {v["path"]: v["trained_on"] for v in verify_files(summary, [new_text, trained / "train.csv"])}
    assert verified == {str(new_text): True, str(trained / "train.csv"): True}  # the base's text, through the chain


@pytest.fixture(scope="module")
def other_tokenizer(tmp_path_factory, new_text):
    from tinylm.data import read_texts
    from tinylm.tokenizer import save_tokenizer, train_tokenizer

    out = tmp_path_factory.mktemp("other") / "tok"
    out.mkdir()
    save_tokenizer(train_tokenizer(read_texts(new_text), vocab_size=200), out)
    return out


REFUSALS = {
    "another tokenizer": (lambda t, k, o: ["--tokenizer", o], "is not the tokenizer of the base"),
    "another preset": (lambda t, k, o: ["--preset", "mini"], "--preset mini is another model size than the base"),
    "another size in a config": (lambda t, k, o: (t / "m.toml").write_text("[model]\nhidden_size = 128\n") and
                                 ["--config", t / "m.toml"], "sets hidden_size = 128, but the base"),
    "a classifier": (lambda t, k, o: ["--init", k / "classifier"], "is a classifier checkpoint"),
    "a missing folder": (lambda t, k, o: ["--init", t / "nope"], "nope does not exist"),
    "rows longer than its positions": (lambda t, k, o: ["--seq-len", "1024"],
                                       "--seq-len 1024 exceeds the model's max_position_embeddings 512"),
    "a fresh embedding init": (lambda t, k, o: ["--embedding-init", "random"], "--embedding-init initialises a fresh"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_what_contradicts_the_base_is_refused_in_one_line(case, trained, new_text, other_tokenizer, tmp_path, capsys):
    extra, match = REFUSALS[case]
    args = ["pretrain", new_text, "--init", trained / "base", "--out", tmp_path / "o", *SHORT, *extra(tmp_path, trained,
                                                                                                       other_tokenizer)]
    assert_one_line_error(capsys, args, match)
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_pretrain_without_a_tokenizer_or_a_base_is_refused_in_one_line(new_text, tmp_path, capsys):
    assert_one_line_error(capsys, ["pretrain", new_text, "--out", tmp_path / "o"], "--tokenizer DIR")


def test_the_preset_of_the_bases_size_is_accepted_and_gives_its_training_defaults(trained, new_text, capsys):
    code, out, err = run_cli(capsys, "pretrain", new_text, "--init", trained / "base", "--out", "unused",
                             "--print-config")
    assert code in (0, None), err
    tiny = PRESETS["tiny"]
    assert f"hidden_size = {tiny.model.hidden_size}" in out and f"lr = {tiny.pretrain.train.lr!r}" in out
    assert "hidden_dropout_prob = 0.0" in out  # pretraining's, whatever the base had
    code, _, err = run_cli(capsys, "pretrain", new_text, "--init", trained / "base", "--out", "unused",
                           "--preset", "tiny", "--print-config")
    assert code in (0, None), err


def test_a_resume_continues_from_the_runs_own_checkpoint_not_the_base(learnt_base, trained, new_text, tmp_path):
    common = ["--init", learnt_base, "--max-steps", "30", "--save-every", "10", "--batch-size", "8", "--seq-len", "32",
              "--precision", "fp32", "--device", "cpu", "-q"]
    reference = tmp_path / "reference"
    run_to_end("pretrain", new_text, "--out", reference, *common)
    out = tmp_path / "continued"
    args = ["pretrain", new_text, "--out", out, *common]
    killed = start_and_stop_at(args, out / "checkpoints" / "step-00000010", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    resumed = run_to_end(*args, "--resume")
    assert "resuming from" in resumed.stderr
    assert_bitwise_equal_weights(out, reference)  # had the base been loaded again, the weights would differ


def test_a_resume_from_another_base_is_refused_in_one_line(learnt_base, trained, new_text, tmp_path, capsys):
    out = tmp_path / "continued"
    args = ["pretrain", new_text, "--out", out, "--max-steps", "200", "--save-every", "2", "--batch-size", "8",
            "--seq-len", "32", "--precision", "fp32", "--device", "cpu", "-q"]
    stopped = start_and_stop_at([*args, "--init", learnt_base], out / "checkpoints" / "step-00000002")
    assert stopped.returncode == -signal.SIGKILL
    assert_one_line_error(capsys, [*args, "--init", trained / "base", "--resume"], "base")


# ---- a base made by transformers ---------------------------------------------------------------------------------

def test_a_transformers_bert_continues_pretraining_and_finetunes(trained, new_text, tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(trained / "tokenizer" / "tokenizer.json"))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    hf_dir = tmp_path / "hf"
    transformers.BertForMaskedLM(config).save_pretrained(hf_dir)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                         cls_token="[CLS]", mask_token="[MASK]").save_pretrained(hf_dir)
    imported, continued = tmp_path / "imported", tmp_path / "continued"
    steps = [
        ["import", hf_dir, imported],
        ["pretrain", new_text, "--init", imported, "--out", continued, "--max-steps", "20", "--batch-size", "16",
         "--precision", "fp32", "--device", "cpu", "-q"],
        ["finetune", trained / "train.csv", "--base", continued, "--out", tmp_path / "classifier", "--epochs", "1",
         "--batch-size", "8", "--seq-len", "32", "--device", "cpu", "-q"],
        ["eval", tmp_path / "classifier", trained / "train.csv", "--json"],
    ]
    for args in steps:
        code, out, err = run_cli(capsys, *args)
        assert code in (0, None), err
    assert 0.0 <= json.loads(out)["accuracy"] <= 1.0
    model, _, _ = load_checkpoint(continued, expect_kind="mlm")
    assert model.config.hidden_size == 32 and model.config.max_position_embeddings == 64
    before = load_checkpoint(imported)[0].state_dict()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # it trained
    assert json.loads((continued / "training_args.json").read_text())["train"]["seq_len"] <= 64
    assert read_manifest(continued)["parents"][0]["path"] == str(imported)
    assert_one_line_error(capsys, ["pretrain", new_text, "--init", imported, "--out", tmp_path / "long", "--seq-len",
                                   "128", "-q"], "--seq-len 128 exceeds the model's max_position_embeddings 64")

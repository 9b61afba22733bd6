import json

import pytest

from tinylm.config import PRESETS, BertConfig, from_dict, resolve_finetune, resolve_pretrain
from tinylm.errors import TinyLMError


def test_preset_then_file_then_flags(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[model]\nhidden_size = 128\nnum_attention_heads = 2\n[train]\nlr = 0.01\nbatch_size = 8\n")
    model, train = resolve_pretrain("small", path, {"batch_size": 4, "lr": None})
    assert model.hidden_size == 128 and model.num_attention_heads == 2
    assert model.num_hidden_layers == PRESETS["small"].model.num_hidden_layers
    assert train.train.lr == 0.01 and train.train.batch_size == 4
    assert PRESETS["small"].model.hidden_size == 256, "presets are not mutated"


def test_unknown_keys_are_named(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[model]\nhidden_sise = 128\n[train]\nlearning_rate = 1.0\n")
    with pytest.raises(TinyLMError, match="hidden_sise"):
        resolve_pretrain("tiny", path, {})
    path.write_text("[train]\nlearning_rate = 1.0\n")
    with pytest.raises(TinyLMError, match="learning_rate"):
        resolve_finetune(path, {})
    path.write_text("[optimizer]\nlr = 1\n")
    with pytest.raises(TinyLMError, match="optimizer"):
        resolve_pretrain("tiny", path, {})


def test_wrong_types_and_impossible_sizes():
    with pytest.raises(TinyLMError, match="hidden_size"):
        from_dict(BertConfig, {"hidden_size": "big"}, "config.json")
    with pytest.raises(TinyLMError, match="divisible"):
        BertConfig(hidden_size=100, num_attention_heads=3).validate()
    with pytest.raises(TinyLMError, match="positive"):
        BertConfig(num_hidden_layers=0).validate()


def test_bool_is_not_an_int():
    with pytest.raises(TinyLMError):
        from_dict(BertConfig, {"num_hidden_layers": True}, "x")


def test_config_json_round_trip():
    config = BertConfig(hidden_size=64, num_attention_heads=2)
    assert from_dict(BertConfig, json.loads(json.dumps(config.__dict__)), "x") == config


def test_print_config_round_trips_and_the_run_folder_keeps_it(capsys, trained, tmp_path):
    """--print-config prints preset + file + flags as TOML; --config reads it back to the same configuration,
    and the run folder's config.toml repeats the run (its length resolved)."""
    import tomllib

    from tinylm.cli import main

    def printed(*args):
        with pytest.raises(SystemExit) as done:
            main([str(a) for a in args])
        assert done.value.code in (0, None)
        return capsys.readouterr().out

    base = ["pretrain", trained / "train.csv", "--tokenizer", trained / "tokenizer", "--out", tmp_path / "run"]
    first = printed(*base, "--preset", "tiny", "--lr", "0.003", "--epochs", "2", "--seq-len", "32", "--print-config")
    parsed = tomllib.loads(first)
    assert parsed["train"]["lr"] == 0.003 and parsed["train"]["epochs"] == 2 and "max_steps" not in parsed["train"]
    assert parsed["model"]["hidden_size"] == 64  # the tiny preset
    (tmp_path / "c.toml").write_text(first)
    assert printed(*base, "--config", tmp_path / "c.toml", "--print-config") == first
    assert not (tmp_path / "run").exists()  # printing trains nothing

    printed(*base, "--config", tmp_path / "c.toml", "--batch-size", "8", "-q")
    kept = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert kept["train"]["max_steps"] >= 2 and kept["train"]["batch_size"] == 8  # 2 epochs, resolved to steps
    from tinylm.tokenizer import load_tokenizer

    assert kept["model"]["vocab_size"] == load_tokenizer(trained / "tokenizer").get_vocab_size()  # the tokenizer's

    finetune = printed("finetune", trained / "train.csv", "--base", trained / "base", "--out", tmp_path / "clf",
                       "--epochs", "3", "--print-config")
    assert tomllib.loads(finetune)["train"]["epochs"] == 3 and "[model]" not in finetune


@pytest.mark.parametrize("lengths, longest, fitted", [([10] * 96 + [200] * 4, 512, 32), ([10] * 90 + [40] * 10, 512, 64),
                                                      ([70] * 100, 512, 128), ([900] * 10, 512, 128),
                                                      ([40] * 100, 48, 48), ([], 512, 128)])
def test_rows_are_fitted_to_the_documents(lengths, longest, fitted):
    """The shortest of 32/64/128 tokens that holds 95% of the documents whole ([CLS] + tokens + [SEP])."""
    import numpy as np

    from tinylm.pretrain import fitted_seq_len

    stream = np.concatenate([np.r_[np.full(n, 7), 3] for n in lengths]) if lengths else np.full(50, 7)  # 3 = [SEP]
    assert fitted_seq_len(stream, sep_id=3, longest=longest) == fitted


def test_unset_rows_and_batch_are_resolved_from_the_corpus_and_recorded(trained, tmp_path):
    import tomllib
    from dataclasses import replace

    from tinylm.config import PretrainConfig, RunOptions
    from tinylm.pretrain import pretrain

    questions = tmp_path / "questions.txt"
    questions.write_text("".join(f"Which invoice {i} paid the hotel?\n" for i in range(300)), encoding="utf-8")
    for given, rows, batch in ((PretrainConfig.of(max_steps=2), 32, 128),
                               (PretrainConfig.of(max_steps=2, seq_len=64, batch_size=4), 64, 4)):
        pretrain([questions], trained / "tokenizer", tmp_path / "base", replace(PRESETS["tiny"].model), given,
                 RunOptions(quiet=True, overwrite=True))
        kept = tomllib.loads((tmp_path / "base" / "config.toml").read_text())["train"]
        assert (kept["seq_len"], kept["batch_size"]) == (rows, batch)  # the run folder repeats the run
        args = json.loads((tmp_path / "base" / "training_args.json").read_text())["train"]
        assert (args["seq_len"], args["batch_size"]) == (rows, batch)


@pytest.mark.parametrize("key, value, message", [("lr", 0, "lr must be positive, got 0"),
                                                 ("warmup_ratio", 1.5, "warmup-ratio must be in [0, 1), got 1.5"),
                                                 ("weight_decay", -0.1, "weight-decay must not be negative"),
                                                 ("grad_clip", 0.0, "grad-clip must be positive"),
                                                 ("pooling", "first", "pooling must be one of max, mean, cls"),
                                                 ("ema_decay", 1.0, "ema-decay must be in [0, 1)")])
def test_a_stage_config_checks_itself_where_it_is_built(tmp_path, key, value, message):
    """The same checks for a TOML file, the flags and the library: the config refuses what it cannot run."""
    from tinylm.config import FinetuneConfig

    with pytest.raises(TinyLMError, match=rf"arguments: --{message}".replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        FinetuneConfig.of(**{key: value})
    path = tmp_path / "run.toml"
    path.write_text(f"[train]\n{key} = {value!r}\n".replace("'", '"'))
    with pytest.raises(TinyLMError, match=r"run.toml \[train\]"):
        resolve_finetune(path, {})


def test_resolved_values_are_derived_not_written_into_the_callers_config():
    from dataclasses import replace

    from tinylm.config import FinetuneConfig
    from tinylm.finetune import resolve_seq_len

    cfg = FinetuneConfig.of(epochs=2)
    resolved = resolve_seq_len(cfg, 128)
    assert cfg.train.seq_len is None and resolved.train.seq_len == 128 and resolved.epochs == 2
    assert FinetuneConfig().train.lr == 5e-4 and FinetuneConfig().train is not FinetuneConfig().train
    assert replace(cfg, epochs=3).train == cfg.train

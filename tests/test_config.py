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
    assert train.lr == 0.01 and train.batch_size == 4
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

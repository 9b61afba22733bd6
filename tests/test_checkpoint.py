import hashlib
import json
import os

import pytest
import torch
from safetensors import safe_open

from tinylm.checkpoint import TIED_KEYS, load_checkpoint, save_checkpoint
from tinylm.errors import TinyLMError


def assert_same_state(model, again):
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_round_trip_is_exact_and_tied_weight_stored_once(trained, tmp_path):
    model, tokenizer, meta = load_checkpoint(trained / "base", expect_kind="mlm")
    with safe_open(str(trained / "base" / "model.safetensors"), framework="pt") as f:
        assert not set(TIED_KEYS) & set(f.keys())
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    save_checkpoint(tmp_path / "copy", model, tokenizer, {"note": "copy"})
    again, _, _ = load_checkpoint(tmp_path / "copy")
    assert_same_state(model, again)


def test_the_same_weights_make_the_same_file_byte_for_byte(trained, tmp_path):
    # safetensors writes its metadata in hash-map order, which differs between calls (2 keys: half of them).
    model, tokenizer, _ = load_checkpoint(trained / "classifier", expect_kind="classifier")
    digests = set()
    for i in range(8):
        save_checkpoint(tmp_path / str(i), model, tokenizer, {}, id2label={0: "a", 1: "b", 2: "c"})
        digests.add(hashlib.sha256((tmp_path / str(i) / "model.safetensors").read_bytes()).hexdigest())
    assert len(digests) == 1
    with safe_open(str(tmp_path / "0" / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "tinylm_kind": "classifier"}
    again, _, _ = load_checkpoint(tmp_path / "0")
    assert_same_state(model, again)


def test_classifier_checkpoint_has_labels_and_hf_config(trained):
    config = json.loads((trained / "classifier" / "config.json").read_text())
    assert config["kind"] == "classifier" and config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "office", "1": "software", "2": "travel"}
    assert config["label2id"] == {"office": 0, "software": 1, "travel": 2}
    for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        assert name in config
    lines = (trained / "classifier" / "metrics.jsonl").read_text().splitlines()
    assert any("val_accuracy" in json.loads(line) for line in lines)


def test_save_replaces_atomically_and_leaves_no_temporaries(trained, tmp_path):
    model, tokenizer, _ = load_checkpoint(trained / "base")
    out = tmp_path / "ckpt"
    save_checkpoint(out, model, tokenizer, {"n": 1})
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    save_checkpoint(out, model, tokenizer, {"n": 2})
    assert json.loads((out / "training_args.json").read_text()) == {"n": 2}
    assert (out / "metrics.jsonl").read_text() == '{"step": 1}\n', "run files survive a save"
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_wrong_kind_is_refused(trained):
    with pytest.raises(TinyLMError, match="is a classifier checkpoint, but this command needs a base"):
        load_checkpoint(trained / "classifier", expect_kind="mlm")
    with pytest.raises(TinyLMError, match=r"is a base \(MLM\) checkpoint, but this command needs a classifier"):
        load_checkpoint(trained / "base", expect_kind="classifier")

"""`tinylm export` / `tinylm import`: transformers loads what we export, we load what transformers saves.

Everything is local: transformers is only ever pointed at folders in tmp_path, with local_files_only=True.
"""

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from conftest import DATA
from test_errors import assert_one_line_error, run_cli
from tinylm.checkpoint import load_checkpoint
from tinylm.config import FinetuneConfig, RunOptions
from tinylm.data import encode_documents, pad_batch
from tinylm.evaluate import predict
from tinylm.finetune import finetune

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4
SPECIALS = dict(unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def real_texts() -> list[str]:
    """Six invoices from data/test.csv cut to very different lengths, plus umlauts, digits and punctuation."""
    with open(DATA / "test.csv", encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][:5]
    cuts = [40, 150, 400, 900, None]
    return ["Müller & Söhne: 1.234,56 € (Größe ÄÖÜ) — zählen, nicht zahlen!"] + \
        [t if n is None else t[:n] for t, n in zip(texts, cuts)]


def hf_batch(hf_tokenizer, texts, seq_len):
    """seq_len None: the tokenizer's model_max_length."""
    return hf_tokenizer(texts, truncation=True, max_length=seq_len, padding=True, return_tensors="pt")


def report(capsys, line: str):
    """Measured differences go to the terminal (visible with -s), not into the captured CLI output."""
    with capsys.disabled():
        print(line)


def tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture(scope="module")
def classifiers(trained, tmp_path_factory) -> dict[str, Path]:
    """A classifier per pooling: BERT's own [CLS] pooler (a plain transformers class), mean and max (remote code)."""
    root = tmp_path_factory.mktemp("poolings")
    for pooling in ("cls", "mean", "max"):
        finetune(trained / "train.csv", trained / "base", root / pooling,
                 FinetuneConfig.of(epochs=1, batch_size=8, seq_len=128, pooling=pooling), run=RunOptions(quiet=True))
    return {pooling: root / pooling for pooling in ("cls", "mean", "max")}


@pytest.fixture(scope="module")
def cls_classifier(classifiers):
    return classifiers["cls"]


def load_exported(kind: str, folder: Path):
    if kind == "base":
        return transformers.AutoModelForMaskedLM.from_pretrained(folder, local_files_only=True).eval()
    return transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, local_files_only=True, trust_remote_code=kind != "cls").eval()


# ---- export ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["base", "cls", "mean", "max"])
def test_export_loads_in_transformers_with_same_ids_and_logits(kind, trained, classifiers, tmp_path, capsys):
    ckpt = trained / "base" if kind == "base" else classifiers[kind]
    code, out, err = run_cli(capsys, "export", ckpt, tmp_path / "hf", "--format", "hf")
    assert code in (0, None), err
    assert ("trust_remote_code=True" in out) == (kind in ("mean", "max"))
    hf_model = load_exported(kind, tmp_path / "hf")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True,
                                                              trust_remote_code=kind in ("mean", "max"))
    assert hf_tokenizer.is_fast

    model, tokenizer, meta = load_checkpoint(ckpt)
    model.eval()
    texts = real_texts()
    # a classifier reads what it was trained on (128 tokens here); its tokenizer_config says so to transformers
    seq_len = model.config.max_position_embeddings if kind == "base" else 128
    assert hf_tokenizer.model_max_length == seq_len
    ours = encode_documents(tokenizer, texts, seq_len)
    batch = hf_batch(hf_tokenizer, texts, None)
    theirs = [ids[: int(m.sum())] for ids, m in zip(batch["input_ids"].tolist(), batch["attention_mask"])]
    assert theirs == ours
    assert len({len(s) for s in ours}) >= 4  # really different lengths, so padding is exercised
    input_ids, attention_mask = pad_batch(ours, tokenizer.token_to_id("[PAD]"))
    assert torch.equal(input_ids, batch["input_ids"]) and torch.equal(attention_mask, batch["attention_mask"])

    with torch.no_grad():
        expected = model(input_ids, attention_mask)
        got = hf_model(**batch).logits
    if kind == "base":  # padding positions are not compared: they predict nothing
        real = attention_mask.bool()
        expected, got = expected[real], got[real]
    else:
        assert hf_model.config.id2label == meta["id2label"]
        assert hf_model.config.num_labels == len(meta["id2label"])
    diff = (expected - got).abs().max().item()
    report(capsys, f"max |logit difference| tinylm vs transformers, exported {kind}: {diff:.3g}")
    assert diff < TOLERANCE

    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == [type(hf_model).__name__]
    if kind in ("mean", "max"):  # transformers' BertModel plus the pooling, from the file in the folder
        assert config["model_type"] == "tinylm_bert" and config["classifier_pooling"] == kind
        assert (tmp_path / "hf" / "modeling_tinylm.py").is_file() and "auto_map" in config
        assert not hasattr(hf_model.bert, "pooler") or hf_model.bert.pooler is None
        return
    # The same key set as transformers' own save_pretrained (tied weights stored once); no code in the folder.
    assert config["model_type"] == "bert" and "auto_map" not in config
    assert not list((tmp_path / "hf").glob("*.py"))
    hf_model.save_pretrained(tmp_path / "resaved")
    assert set(tensors(tmp_path / "hf" / "model.safetensors")) == set(tensors(tmp_path / "resaved" / "model.safetensors"))
    assert hf_tokenizer.mask_token == "[MASK]" and hf_tokenizer.pad_token_id == tokenizer.token_to_id("[PAD]")


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_a_remote_code_export_runs_in_a_pipeline_and_refuses_to_load_without_trust(pooling, classifiers, tmp_path,
                                                                                   capsys):
    code, _, err = run_cli(capsys, "export", classifiers[pooling], tmp_path / "hf")
    assert code in (0, None), err
    # Without trust_remote_code transformers must refuse, not load a BertForSequenceClassification with a random
    # pooler in place of the pooling the classifier was trained with.
    with pytest.raises(ValueError, match="trust_remote_code"):
        transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf", local_files_only=True)
    classify = transformers.pipeline("text-classification", model=str(tmp_path / "hf"), trust_remote_code=True,
                                     top_k=None)
    texts = real_texts()
    got = classify(texts, truncation=True)
    rows = predict(classifiers[pooling], write_texts(tmp_path / "texts.csv", texts), precision="fp32")
    for ours, theirs in zip(rows, got):
        theirs = {item["label"]: item["score"] for item in theirs}
        assert max(abs(ours["probabilities"][label] - p) for label, p in theirs.items()) < TOLERANCE
        assert max(theirs, key=theirs.get) == ours["label"]


def write_texts(path: Path, texts: list[str]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    return path


def test_export_refuses_a_non_empty_folder_and_an_unknown_format(trained, tmp_path, capsys):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("x")
    assert_one_line_error(capsys, ["export", trained / "base", tmp_path / "hf"], "--overwrite")
    assert_one_line_error(capsys, ["export", trained / "base", tmp_path / "o", "--format", "tflite"], "'tflite'")
    assert_one_line_error(capsys, ["export", trained / "base", tmp_path / "o", "--int8"], "--format onnx")
    code, _, err = run_cli(capsys, "export", trained / "base", tmp_path / "hf", "--overwrite")
    assert code in (0, None), err
    assert not (tmp_path / "hf" / "keep.txt").exists()


# ---- import ---------------------------------------------------------------------------------------------------

def tiny_hf_config(vocab_size, **extra):
    return transformers.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=64, max_position_embeddings=64, **extra)


@pytest.fixture
def hf_mlm_dir(trained, tmp_path):
    """A random transformers BertForMaskedLM with a tinylm-trained tokenizer, both from save_pretrained."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(trained / "tokenizer" / "tokenizer.json"))
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(tiny_hf_config(tok.get_vocab_size()))
    out = tmp_path / "hf_mlm"
    model.save_pretrained(out)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS).save_pretrained(out)
    return out


@pytest.fixture
def hf_classifier_dir(trained, tmp_path):
    """A random BertForSequenceClassification with a BERT-style vocab.txt: [PAD]=0, [UNK]=100 ... [MASK]=103."""
    from tokenizers import Tokenizer

    words = [t for t, _ in sorted(Tokenizer.from_file(str(trained / "tokenizer" / "tokenizer.json")).get_vocab().items(),
                                  key=lambda item: item[1]) if not t.startswith("[")]
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    out = tmp_path / "hf_classifier"
    torch.manual_seed(1)
    labels = ["office", "software", "travel"]
    model = transformers.BertForSequenceClassification(tiny_hf_config(
        len(vocab), id2label=dict(enumerate(labels)), label2id={k: i for i, k in enumerate(labels)}))
    model.save_pretrained(out)
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    transformers.BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True).save_pretrained(out)
    (out / "tokenizer.json").unlink()  # exercise the vocab.txt path
    return out


def imported_logits(ckpt: Path, hf_dir: Path, auto, texts: list[str]):
    model, tokenizer, meta = load_checkpoint(ckpt)
    hf_model = auto.from_pretrained(hf_dir, local_files_only=True).eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir, local_files_only=True)
    batch = hf_batch(hf_tokenizer, texts, 64)
    ours = encode_documents(tokenizer, texts, 64)
    assert [ids[: int(m.sum())] for ids, m in zip(batch["input_ids"].tolist(), batch["attention_mask"])] == ours
    with torch.no_grad():
        return model.eval()(batch["input_ids"], batch["attention_mask"]), hf_model(**batch).logits, batch, meta


def test_import_masked_lm_matches_transformers_and_finetunes(hf_mlm_dir, trained, tmp_path, capsys):
    code, out, err = run_cli(capsys, "import", hf_mlm_dir, tmp_path / "imported")
    assert code in (0, None), err
    ours, theirs, batch, meta = imported_logits(tmp_path / "imported", hf_mlm_dir, transformers.AutoModelForMaskedLM,
                                                real_texts())
    real = batch["attention_mask"].bool()
    diff = (ours[real] - theirs[real]).abs().max().item()
    report(capsys, f"max |logit difference| imported BertForMaskedLM vs transformers: {diff:.3g}")
    assert diff < TOLERANCE and meta["kind"] == "mlm"

    code, _, err = run_cli(capsys, "finetune", trained / "train.csv", "--base", tmp_path / "imported", "--out",
                           tmp_path / "ft", "--epochs", "1", "--batch-size", "8", "--seq-len", "32", "--pooling", "cls",
                           "--device", "cpu", "-q")
    assert code in (0, None), err
    assert load_checkpoint(tmp_path / "ft", expect_kind="classifier")[2]["classifier_pooling"] == "cls"


def test_import_classifier_with_bert_special_ids_evaluates_and_predicts(hf_classifier_dir, trained, tmp_path, capsys):
    code, out, err = run_cli(capsys, "import", hf_classifier_dir, tmp_path / "imported")
    assert code in (0, None), err
    assert "vocab.txt" in out
    ours, theirs, _, meta = imported_logits(tmp_path / "imported", hf_classifier_dir,
                                            transformers.AutoModelForSequenceClassification, real_texts())
    diff = (ours - theirs).abs().max().item()
    report(capsys, f"max |logit difference| imported BertForSequenceClassification vs transformers: {diff:.3g}")
    assert diff < TOLERANCE
    assert meta["id2label"] == {0: "office", 1: "software", 2: "travel"} and meta["classifier_pooling"] == "cls"
    _, tokenizer, _ = load_checkpoint(tmp_path / "imported")
    assert [tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]

    code, out, err = run_cli(capsys, "eval", tmp_path / "imported", trained / "train.csv", "--json")
    assert code in (0, None), err
    assert json.loads(out)["n"] == 90
    code, out, err = run_cli(capsys, "predict", tmp_path / "imported", trained / "train.csv")
    assert code in (0, None), err
    assert len(out.strip().splitlines()) == 90


@pytest.mark.parametrize("kind", ["base", "cls", "max"])
def test_round_trip_export_import_gives_identical_weights(kind, trained, classifiers, tmp_path, capsys):
    ckpt = trained / "base" if kind == "base" else classifiers[kind]
    for args in (["export", ckpt, tmp_path / "hf"], ["import", tmp_path / "hf", tmp_path / "back"]):
        code, _, err = run_cli(capsys, *args)
        assert code in (0, None), err
    before, after = tensors(ckpt / "model.safetensors"), tensors(tmp_path / "back" / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    assert (ckpt / "tokenizer.json").read_text() == (tmp_path / "back" / "tokenizer.json").read_text()
    original, back = (json.loads((d / "config.json").read_text()) for d in (ckpt, tmp_path / "back"))
    for key in ("kind", "id2label", "classifier_pooling", "vocab_size", "hidden_size", "num_hidden_layers",
                "pad_token_id"):
        assert original.get(key) == back.get(key), key


def test_import_bare_bert_model_adds_a_fresh_head(trained, tmp_path, capsys):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(trained / "tokenizer" / "tokenizer.json"))
    transformers.BertModel(tiny_hf_config(tok.get_vocab_size())).save_pretrained(tmp_path / "bare")
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS).save_pretrained(tmp_path / "bare")
    code, out, err = run_cli(capsys, "import", tmp_path / "bare", tmp_path / "imported")
    assert code in (0, None), err
    assert "initialised fresh" in out and "pooler" in out
    assert load_checkpoint(tmp_path / "imported", expect_kind="mlm")[2]["kind"] == "mlm"


# ---- refusals -------------------------------------------------------------------------------------------------

def edit_config(hf_dir: Path, **changes):
    path = hf_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def pickle_only(d: Path):
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"not opened")


REFUSALS = {
    "pickle only": (pickle_only, "unpickling can run arbitrary code"),
    "roberta": (lambda d: edit_config(d, model_type="roberta"), "model_type is 'roberta'"),
    "decoder": (lambda d: edit_config(d, is_decoder=True), "is_decoder"),
    "relative positions": (lambda d: edit_config(d, position_embedding_type="relative_key"), "absolute"),
    "missing tokenizer": (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json"),
    "shape mismatch": (lambda d: edit_config(d, intermediate_size=48), "bert.encoder.layer.0.intermediate.dense"),
    "vocab mismatch": (lambda d: edit_config(d, vocab_size=999), "vocab_size 999"),
    "no config": (lambda d: (d / "config.json").unlink(), "config.json"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_import_refusals_are_one_line(case, hf_mlm_dir, tmp_path, capsys):
    break_it, match = REFUSALS[case]
    break_it(hf_mlm_dir)
    assert_one_line_error(capsys, ["import", hf_mlm_dir, tmp_path / "out"], match)
    assert not (tmp_path / "out").exists()


def test_import_refuses_a_non_empty_out_folder(hf_mlm_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    assert_one_line_error(capsys, ["import", hf_mlm_dir, tmp_path / "out"], "--overwrite")


def test_hf_module_does_not_import_transformers():
    import subprocess
    import sys

    code = "import sys, tinylm.hf, tinylm.cli; sys.exit('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0


def test_random_replacements_skip_a_bert_vocabularys_special_and_unused_ids():
    """An imported BERT vocabulary has its specials at 100..103: pretraining must not draw them as 'words'."""
    import numpy as np

    from tinylm.data import PackedRows
    from tinylm.pretrain import MLMBatches

    ids = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    stream = np.random.default_rng(0).integers(104, 300, size=64 * 31)
    rows = PackedRows(stream, 32, cls_id=101, pad_id=0)
    batch = MLMBatches(rows, batch_size=64, seed=0, ids=ids, vocab_size=300, mlm_probability=0.9)(0)[0].inputs
    replaced = (batch["labels"] != -100) & (batch["input_ids"] != batch["labels"])  # labels hold the originals
    changed = batch["input_ids"][replaced]
    assert changed.numel() > 0 and bool(((changed == 103) | (changed >= 104)).all())

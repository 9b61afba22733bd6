import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tinylm.data import PackedRows, hold_out, pack_documents, read_records, read_texts
from tinylm.errors import TinyLMError
from tinylm.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer

from conftest import DATA


def test_every_input_format(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "b.txt").write_text("second invoice\nwith two lines")
    (folder / "a.txt").write_text("first invoice")
    (tmp_path / "lines.txt").write_text("one\n\n  \ntwo\n")
    (tmp_path / "t.csv").write_text('text,label\n"multi\nline, with comma",x\nplain,y\n')
    (tmp_path / "t.tsv").write_text("label\ttext\nx\tfirst\ny\tsecond\n")
    (tmp_path / "t.jsonl").write_text(json.dumps({"body": "Grüße", "cat": 3}) + "\n\n" + json.dumps({"body": "b", "cat": 4}) + "\n")
    assert read_texts(folder) == ["first invoice", "second invoice\nwith two lines"]
    assert read_texts(tmp_path / "lines.txt") == ["one", "two"]
    records = read_records(tmp_path / "t.csv", label_column="label")
    assert [(r.text, r.label) for r in records] == [("multi\nline, with comma", "x"), ("plain", "y")]
    assert [r.label for r in read_records(tmp_path / "t.tsv", label_column="label")] == ["x", "y"]
    records = read_records(tmp_path / "t.jsonl", text_column="body", label_column="cat")
    assert [(r.text, r.label) for r in records] == [("Grüße", "3"), ("b", "4")]
    assert len(read_texts([folder, tmp_path / "lines.txt"])) == 4


@pytest.mark.parametrize("name, content, match", [
    ("bad.csv", 'text,label\n"a",x\nb,y,z\n', r"bad.csv:3: row has 3 fields"),
    ("bad.jsonl", '{"text": "a"}\n{"text": \n', r"bad.jsonl:2: not valid JSON"),
    ("col.csv", "body,label\na,x\n", r"no column 'text' \(columns: body, label\)"),
    ("empty.csv", "", r"has no rows"),
    ("blank.txt", "  \n\n", r"no text found"),
    ("x.pdf", "a", r"unsupported file type"),
])
def test_bad_files_say_where(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(TinyLMError, match=match):
        read_records(tmp_path / name)


def test_non_utf8_names_the_file_and_offers_encoding(tmp_path):
    (tmp_path / "latin.txt").write_bytes("Rechnung für Müller\n".encode("latin-1"))
    with pytest.raises(TinyLMError, match=r"latin.txt is not valid utf-8.*--encoding"):
        read_texts(tmp_path / "latin.txt")
    assert read_texts(tmp_path / "latin.txt", encoding="latin-1") == ["Rechnung für Müller"]


def test_tokenizer_splits_digits_and_keeps_accents(tmp_path):
    texts = ["Rechnung Nr. 2024-00123 für Müller GmbH, Betrag 1.234,56 EUR"] * 20 + ["invoice total 99.00"] * 20
    tokenizer = train_tokenizer(texts, vocab_size=200, lowercase=True)
    save_tokenizer(tokenizer, tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    tokens = tokenizer.encode("Betrag 2024 für Müller").tokens
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    assert ["2", "0", "2", "4"] == tokens[2:6]
    assert "müller" in tokens and "für" in tokens
    assert [tokenizer.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 1, 2, 3, 4]


def test_wordpiece_merges_the_most_frequent_pair_first_and_breaks_ties_by_id():
    from tinylm.tokenizer import learn_pieces

    # Sennrich et al.'s example, worked by hand: (##e, ##s) and (##s, ##t) are both seen 9 times and the first has
    # the smaller ids; then "##est" 9, "lo" 7 (before "##o ##w", also 7), "low" 7; then the 6s, 3s and 2s.
    counts = {"low": 5, "lower": 2, "newest": 6, "widest": 3}
    alphabet = ["[PAD]", *"deilnorstw", *(f"##{c}" for c in "deiorstw")]
    merges = ["##es", "##est", "lo", "low", "ne", "##west", "newest", "wi", "##dest", "widest", "##er", "lower"]
    assert learn_pieces(counts, vocab_size=100, min_frequency=2, specials=["[PAD]"]) == alphabet + merges
    assert learn_pieces(counts, vocab_size=len(alphabet) + 2, min_frequency=2, specials=["[PAD]"]) == alphabet + merges[:2]
    assert learn_pieces(counts, vocab_size=100, min_frequency=3, specials=["[PAD]"]) == alphabet + merges[:10]
    assert learn_pieces(counts, vocab_size=100, min_frequency=7, specials=["[PAD]"]) == alphabet + merges[:4]


def test_the_same_text_gives_the_same_tokenizer_in_every_process(tmp_path):
    """tokenizers' own trainer numbers pieces in hash-map order and differs from run to run on this corpus."""
    script = ("import sys; from tinylm.data import read_texts; from tinylm.tokenizer import train_tokenizer, save_tokenizer;"
              f"save_tokenizer(train_tokenizer(read_texts({str(DATA / 'corpus.jsonl')!r})[:1500], vocab_size=1500), sys.argv[1])")
    for seed in ("1", "2"):
        (tmp_path / seed).mkdir()
        subprocess.run([sys.executable, "-c", script, str(tmp_path / seed)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
    assert (tmp_path / "1" / "tokenizer.json").read_bytes() == (tmp_path / "2" / "tokenizer.json").read_bytes()


def test_packing_fills_rows_and_separates_documents(tmp_path):
    tokenizer = train_tokenizer(["alpha beta gamma delta"] * 10, vocab_size=100)
    rows = pack_documents(tokenizer, ["alpha beta", "gamma", "delta alpha beta gamma"], seq_len=5)
    cls_, sep, pad = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    assert rows.shape == (3, 5) and (rows[:, 0] == cls_).all()
    body = rows[:, 1:].reshape(-1)
    assert (body == sep).sum() == 3  # one [SEP] after each document
    assert (body == pad).sum() == 12 - 10  # 7 words + 3 [SEP] = 10 tokens; only the last row is padded
    assert np.all(body[:10] != pad)


@pytest.mark.parametrize("n_rows, fraction, most, held", [(517, 0.05, 256, 24), (10_000, 0.05, 256, 256),
                                                          (100, 0.05, 256, 0), (517, 0.0, 256, 0), (64, 0.5, 256, 32)])
def test_held_out_rows_are_whole_blocks_apart_from_the_training_rows(n_rows, fraction, most, held):
    body = 15
    rows = PackedRows(np.arange(n_rows * body - 3) % 90 + 10, body + 1, cls_id=1, pad_id=0)  # the last row padded
    train, held_out = hold_out(rows, fraction, seed=3, most=most)
    assert len(held_out) == held and len(train) == n_rows - held
    train_ids, held_ids = train.row_ids(np.arange(len(train))), held_out.row_ids(np.arange(len(held_out)))
    assert sorted([*train_ids, *held_ids]) == list(range(n_rows))  # every row on exactly one side
    assert n_rows - 1 in train_ids  # the padded last row is trained on
    assert all(np.diff(block).tolist() == [1] * 7 for block in held_ids.reshape(-1, 8))  # blocks of 8 rows
    np.testing.assert_array_equal(train.take([0, len(train) - 1]), rows.take(train_ids[[0, -1]]))
    again, _ = hold_out(rows, fraction, seed=3, most=most)
    np.testing.assert_array_equal(again.row_ids(np.arange(len(again))), train_ids)  # a resumed run's split

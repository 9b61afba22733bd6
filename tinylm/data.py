"""Reading documents (txt folders, txt, CSV, TSV, JSONL), encoding them, packing and batching token ids."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from tinylm.errors import TinyLMError

FORMATS_HELP = (
    "DATA is a folder of .txt files (one document per file), a .txt file (one document per non-empty line), "
    "or a .csv / .tsv file with a header row, or a .jsonl file (one JSON object per line); "
    "for tables the text (and label) column is chosen by flag."
)
TABLE_SUFFIXES = {".csv", ".tsv", ".jsonl"}
csv.field_size_limit(sys.maxsize)  # invoices with many line items make long fields


@dataclass
class Record:
    text: str
    label: str | None = None
    id: str | None = None
    where: str = ""  # "file:line", for error messages


def _read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise TinyLMError(
            f"{path} is not valid {encoding} text (byte {e.start}: {e.object[e.start:e.start + 4]!r}); "
            "convert it to UTF-8 or pass --encoding (e.g. --encoding latin-1)"
        ) from None
    except LookupError:
        raise TinyLMError(f"unknown --encoding {encoding!r}") from None
    except OSError as e:
        raise TinyLMError(f"cannot read {path}: {e.strerror}") from None


def _table_rows(path: Path, encoding: str):
    """Yield (line_number, dict) for each row of a CSV/TSV/JSONL file."""
    content = _read_text(path, encoding)
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(content.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise TinyLMError(f"{path}:{number}: not valid JSON ({e.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise TinyLMError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
            yield number, row
        return
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(content.splitlines(keepends=True), delimiter=delimiter, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip().lstrip("\ufeff") for h in header]
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise TinyLMError(f"{path}:{reader.line_num}: row has {len(row)} fields but the header has "
                                  f"{len(header)} ({', '.join(header)}); quote fields that contain '{delimiter}'")
            yield reader.line_num, dict(zip(header, row))
    except csv.Error as e:
        raise TinyLMError(f"{path}:{reader.line_num}: malformed {path.suffix[1:].upper()} ({e})") from None


def _column(row: dict, name: str, path: Path, number: int, flag: str) -> str:
    if name not in row:
        raise TinyLMError(f"{path}:{number}: no column {name!r} (columns: {', '.join(map(str, row))}); "
                          f"choose one with {flag}")
    value = row[name]
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def read_records(paths: list[Path] | Path, text_column: str = "text", label_column: str | None = None,
                 id_column: str | None = None, encoding: str = "utf-8") -> list[Record]:
    """Read every document of every path, in order. With label_column each record must carry a label."""
    paths = [paths] if isinstance(paths, (str, Path)) else paths
    records: list[Record] = []
    for path in map(Path, paths):
        if not path.exists():
            raise TinyLMError(f"{path} does not exist")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not files:
                raise TinyLMError(f"folder {path} has no .txt files (one document per file is expected)")
            if label_column:
                raise TinyLMError(f"{path} is a folder of plain text: labelled data must be a .csv, .tsv or .jsonl "
                                  f"file with a {label_column!r} column")
            records += [Record(_read_text(f, encoding), where=str(f), id=str(f.relative_to(path))) for f in files]
        elif path.suffix.lower() in TABLE_SUFFIXES:
            before = len(records)
            for number, row in _table_rows(path, encoding):
                where = f"{path}:{number}"
                label = _column(row, label_column, path, number, "--label-column").strip() if label_column else None
                if label_column and not label:
                    raise TinyLMError(f"{where}: empty label in column {label_column!r}")
                ident = _column(row, id_column, path, number, "--id-column") if id_column else None
                records.append(Record(_column(row, text_column, path, number, "--text-column"), label, ident, where))
            if len(records) == before:
                raise TinyLMError(f"{path} has no rows")
        elif path.suffix.lower() == ".txt" or path.suffix == "":
            if label_column:
                raise TinyLMError(f"{path} is plain text: labelled data must be a .csv, .tsv or .jsonl file "
                                  f"with a {label_column!r} column")
            lines = _read_text(path, encoding).splitlines()
            records += [Record(line, where=f"{path}:{n}") for n, line in enumerate(lines, 1) if line.strip()]
        else:
            raise TinyLMError(f"{path}: unsupported file type {path.suffix!r}; {FORMATS_HELP}")
    if not any(r.text.strip() for r in records):
        raise TinyLMError(f"no text found in {', '.join(map(str, paths))} (all documents are empty)")
    return records


def read_texts(paths, text_column: str = "text", encoding: str = "utf-8") -> list[str]:
    """The non-empty documents, for tokenizer training and pretraining."""
    return [r.text for r in read_records(paths, text_column, encoding=encoding) if r.text.strip()]


# ---- pretraining: pack documents into full rows --------------------------------------------------------------

def pack_documents(tokenizer: Tokenizer, texts: list[str], seq_len: int) -> np.ndarray:
    """Concatenate documents, each followed by [SEP], and cut the stream into rows of [CLS] + seq_len-1 tokens.

    Packing leaves no padding except in the last row, so every position of every step trains the model.
    """
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)  # parallel, in Rust
    pieces = [np.asarray(enc.ids + [sep_id], dtype=np.int64) for enc in encodings if enc.ids]
    if not pieces:
        raise TinyLMError("the corpus produced no tokens")
    stream = np.concatenate(pieces)
    body = seq_len - 1
    n_rows = -(-stream.size // body)
    rows = np.full((n_rows, seq_len), tokenizer.token_to_id("[PAD]"), dtype=np.int64)
    rows[:, 0] = cls_id
    flat = rows[:, 1:].reshape(-1)
    flat[: stream.size] = stream
    rows[:, 1:] = flat.reshape(n_rows, body)
    return rows


# ---- classification: one document per row, padded per batch -------------------------------------------------

def encode_documents(tokenizer: Tokenizer, texts: list[str], seq_len: int) -> list[list[int]]:
    """[CLS] text [SEP], truncated to seq_len tokens (the head of a long document is kept)."""
    tokenizer.enable_truncation(max_length=seq_len)
    try:
        return [enc.ids for enc in tokenizer.encode_batch(texts)]
    finally:
        tokenizer.no_truncation()


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence; returns (input_ids, attention_mask)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return ids, mask

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
from tinylm.tokenizer import CLS, PAD, SEP

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


def _decode_error(path: Path, encoding: str, e: UnicodeDecodeError, where: str = "") -> TinyLMError:
    return TinyLMError(
        f"{path} is not valid {encoding} text{where} (bytes {e.object[e.start:e.start + 4]!r}); "
        "convert it to UTF-8 or pass --encoding (e.g. --encoding latin-1)"
    )


def _read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise _decode_error(path, encoding, e) from None
    except LookupError:
        raise TinyLMError(f"unknown --encoding {encoding!r}") from None
    except OSError as e:
        raise TinyLMError(f"cannot read {path}: {e.strerror}") from None


def _lines(path: Path, encoding: str):
    """Yield (line_number, line) from a text file, streamed: a corpus larger than memory is fine."""
    number = 0
    try:
        with open(path, encoding=encoding, newline="") as f:
            for number, line in enumerate(f, start=1):
                yield number, line
    except UnicodeDecodeError as e:
        raise _decode_error(path, encoding, e, f" near line {number + 1}") from None
    except LookupError:
        raise TinyLMError(f"unknown --encoding {encoding!r}") from None
    except OSError as e:
        raise TinyLMError(f"cannot read {path}: {e.strerror}") from None


def table_rows(path: Path, encoding: str):
    """Yield (line_number, dict) for each row of a CSV/TSV/JSONL file, streamed."""
    if path.suffix.lower() == ".jsonl":
        for number, line in _lines(path, encoding):
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
    reader = csv.reader((line for _, line in _lines(path, encoding)), delimiter=delimiter, strict=True)
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


def iter_records(paths: list[Path] | Path, text_column: str = "text", label_column: str | None = None,
                 id_column: str | None = None, encoding: str = "utf-8", empty_labels: bool = False):
    """Yield every document of every path, in order, streamed. With label_column each record must carry a label
    (unless empty_labels: a multi-label document may have none). The default label column "label" falls back to
    "labels" in a table that has no "label" column (multi-label data sets often name it so).

    Raises (after the last record) when the inputs held no text at all.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else paths
    found_text = False
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
            for f in files:
                record = Record(_read_text(f, encoding), where=str(f), id=str(f.relative_to(path)))
                found_text = found_text or bool(record.text.strip())
                yield record
        elif path.suffix.lower() in TABLE_SUFFIXES:
            rows = 0
            for number, row in table_rows(path, encoding):
                where = f"{path}:{number}"
                if label_column == "label" and "label" not in row and "labels" in row:
                    label_column = "labels"
                label = _column(row, label_column, path, number, "--label-column").strip() if label_column else None
                if label_column and not label and not empty_labels:
                    raise TinyLMError(f"{where}: empty label in column {label_column!r}")
                ident = _column(row, id_column, path, number, "--id-column") if id_column else None
                record = Record(_column(row, text_column, path, number, "--text-column"), label, ident, where)
                rows += 1
                found_text = found_text or bool(record.text.strip())
                yield record
            if not rows:
                raise TinyLMError(f"{path} has no rows")
        elif path.suffix.lower() == ".txt" or path.suffix == "":
            if label_column:
                raise TinyLMError(f"{path} is plain text: labelled data must be a .csv, .tsv or .jsonl file "
                                  f"with a {label_column!r} column")
            for number, line in _lines(path, encoding):
                if line.strip():
                    found_text = True
                    yield Record(line.rstrip("\r\n"), where=f"{path}:{number}")
        else:
            raise TinyLMError(f"{path}: unsupported file type {path.suffix!r}; {FORMATS_HELP}")
    if not found_text:
        raise TinyLMError(f"no text found in {', '.join(map(str, paths))} (all documents are empty)")


def read_records(paths: list[Path] | Path, text_column: str = "text", label_column: str | None = None,
                 id_column: str | None = None, encoding: str = "utf-8", empty_labels: bool = False) -> list[Record]:
    """Every document of every path, in order (see iter_records)."""
    return list(iter_records(paths, text_column, label_column, id_column, encoding, empty_labels))


def read_texts(paths, text_column: str = "text", encoding: str = "utf-8") -> list[str]:
    """The non-empty documents, for tokenizer training and pretraining."""
    return [r.text for r in iter_records(paths, text_column, encoding=encoding) if r.text.strip()]


# ---- pretraining: pack documents into full rows --------------------------------------------------------------

def encode_plain(tokenizer: Tokenizer, texts: list[str]):
    """Token ids without special tokens, encoded in parallel. encode_batch_fast (tokenizers >= 0.21) skips the
    character offsets, which nothing here needs."""
    return getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)(texts, add_special_tokens=False)


def token_stream(tokenizer: Tokenizer, texts: list[str], dtype=np.int64) -> np.ndarray:
    """Every document's ids followed by [SEP], concatenated; encoded in parallel by tokenizers."""
    sep_id = tokenizer.token_to_id(SEP)
    encodings = encode_plain(tokenizer, texts)
    pieces = [np.asarray(enc.ids + [sep_id], dtype=dtype) for enc in encodings if enc.ids]
    return np.concatenate(pieces) if pieces else np.empty(0, dtype=dtype)


def pack_documents(tokenizer: Tokenizer, texts: list[str], seq_len: int) -> np.ndarray:
    """All rows of an in-memory corpus (see PackedRows)."""
    stream = token_stream(tokenizer, texts)
    if stream.size == 0:
        raise TinyLMError("the corpus produced no tokens")
    rows = PackedRows(stream, seq_len, tokenizer.token_to_id(CLS),
                      tokenizer.token_to_id(PAD))
    return rows.take(np.arange(len(rows)))


class PackedRows:
    """Rows of [CLS] + seq_len-1 tokens cut from the stream: row i holds stream[i*(L-1) : (i+1)*(L-1)].

    A document longer than a row continues in the next one; [SEP] marks where one ends. Only the last row can
    have padding. Rows are gathered from the memory map per batch, so nothing the size of the corpus is held.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, cls_id: int, pad_id: int):
        self.tokens, self.seq_len, self.cls_id, self.pad_id = tokens, seq_len, cls_id, pad_id
        self.body = seq_len - 1
        self.n_rows = -(-len(tokens) // self.body)

    def __len__(self) -> int:
        return self.n_rows

    def take(self, indices) -> np.ndarray:
        """Rows at `indices` as an int64 array (len(indices), seq_len)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.full((len(indices), self.seq_len), self.pad_id, dtype=np.int64)
        out[:, 0] = self.cls_id
        full = indices < len(self.tokens) // self.body  # rows that lie wholly inside the stream
        if full.any():
            starts = indices[full] * self.body
            out[full, 1:] = self.tokens[starts[:, None] + np.arange(self.body)]
        for j in np.flatnonzero(~full):
            piece = self.tokens[indices[j] * self.body:]
            out[j, 1:1 + len(piece)] = piece
        return out


class RowSelection:
    """Some rows of a PackedRows, numbered 0..n-1 among themselves: the training side or the held-out side of
    hold_out(). The held-out side is a few blocks, so training index t is found by skipping the held-out blocks
    before it: nothing the size of the corpus is held."""

    def __init__(self, rows: PackedRows, held_blocks: np.ndarray, block: int, held_out: bool):
        self.rows, self.seq_len, self.block, self.held_out = rows, rows.seq_len, block, held_out
        self.held_blocks = np.sort(np.asarray(held_blocks, dtype=np.int64))
        # training rows before held-out block j: its first row minus the j blocks held out before it
        self._skips = (self.held_blocks - np.arange(len(self.held_blocks))) * block

    def __len__(self) -> int:
        n_held = len(self.held_blocks) * self.block
        return n_held if self.held_out else len(self.rows) - n_held

    def row_ids(self, indices) -> np.ndarray:
        """The PackedRows indices of this selection's rows `indices`."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.held_out:
            return self.held_blocks[indices // self.block] * self.block + indices % self.block
        return indices + self.block * np.searchsorted(self._skips, indices, side="right")

    def take(self, indices) -> np.ndarray:
        return self.rows.take(self.row_ids(indices))


def hold_out(rows: PackedRows, fraction: float, seed: int, most: int, block: int = 8
             ) -> tuple[RowSelection, RowSelection]:
    """(training rows, held-out rows): about `fraction` of the rows (at most `most`), in blocks of `block`
    consecutive rows drawn by `seed`. Rows cut a document where they end, so a held-out row may share a document
    with its neighbour; in blocks, only the documents across a block's two edges are shared. The last, partial
    block (the padded row) is never held out. A corpus too small for one block holds out nothing."""
    full_blocks = len(rows) // block - (len(rows) % block == 0)  # the last block stays on the training side
    n_blocks = min(max(0, full_blocks), int(min(fraction * len(rows), most) // block))
    held = np.random.default_rng([seed, 7]).choice(full_blocks, n_blocks, replace=False) if n_blocks else []
    return RowSelection(rows, held, block, held_out=False), RowSelection(rows, held, block, held_out=True)


# ---- classification: one document per row, padded per batch -------------------------------------------------

def encode_documents(tokenizer: Tokenizer, texts: list[str], seq_len: int) -> list[list[int]]:
    """[CLS] text [SEP], truncated to seq_len tokens (the head of a long document is kept)."""
    tokenizer.enable_truncation(max_length=seq_len)
    try:
        return [enc.ids for enc in tokenizer.encode_batch(texts)]
    finally:
        tokenizer.no_truncation()


MAX_WINDOWS = 8  # windows per document: a very long document must not outweigh the others in training


def encode_windows(tokenizer: Tokenizer, texts: list[str], seq_len: int,
                   max_windows: int = MAX_WINDOWS) -> tuple[list[list[int]], list[int]]:
    """Each document as consecutive [CLS] piece [SEP] windows of up to seq_len tokens, covering its first
    max_windows * (seq_len - 2) tokens. Returns (windows, the index of the document each window comes from)."""
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    body = seq_len - 2
    windows, owners = [], []
    for i, enc in enumerate(encode_plain(tokenizer, texts)):
        ids = enc.ids
        for start in range(0, max(len(ids), 1), body)[:max_windows]:
            windows.append([cls_id, *ids[start:start + body], sep_id])
            owners.append(i)
    return windows, owners


def mean_over_windows(probs: np.ndarray, owners: list[int], n_documents: int) -> np.ndarray:
    """(windows, labels) probabilities -> (documents, labels): the mean over each document's windows."""
    index = np.asarray(owners)
    counts = np.maximum(np.bincount(index, minlength=n_documents), 1)[:, None].astype(probs.dtype)
    summed = np.zeros((n_documents, probs.shape[1]), dtype=probs.dtype)
    np.add.at(summed, index, probs)
    return summed / counts


def encode_for_classification(tokenizer: Tokenizer, texts: list[str], seq_len: int,
                              long_docs: str = "truncate") -> tuple[list[list[int]], list[int]]:
    """(sequences, owner document of each): one truncated sequence per document, or its windows."""
    if long_docs == "windows":
        return encode_windows(tokenizer, texts, seq_len)
    return encode_documents(tokenizer, texts, seq_len), list(range(len(texts)))


def pad_sequences(sequences: list[list[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest sequence; returns int64 (input_ids, attention_mask) arrays."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
    return ids, mask


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """pad_sequences as tensors."""
    ids, mask = pad_sequences(sequences, pad_id)
    return torch.from_numpy(ids), torch.from_numpy(mask)

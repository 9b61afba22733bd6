"""The tokenizer stage: text corpus -> tokenizer folder (tokenizer.json and provenance.json)."""

from __future__ import annotations

from pathlib import Path

from tinylm.checkpoint import check_out_dir
from tinylm.data import read_texts
from tinylm.pii import PLACEHOLDERS, scrub_all
from tinylm.provenance import build_manifest, file_records, now, scrub_record, write_manifest
from tinylm.tokenizer import save_tokenizer, train_tokenizer


def tokenize(data: list[Path], out_dir: Path, vocab_size: int = 8000, text_column: str = "text",
             lowercase: bool = True, min_frequency: int = 2, encoding: str = "utf-8",
             scrub_kinds: tuple[str, ...] | None = None, record_host: bool = False, command: str = "") -> dict:
    """Train the WordPiece tokenizer on the documents of `data` (scrubbed of the PII kinds first, whose
    placeholders become tokens) and write it, with its provenance, to out_dir. A tokenizer folder may be refreshed
    in place. Returns {"path", "vocab_size", "n_documents"}."""
    check_out_dir(Path(out_dir), overwrite=True, flag="--out ")
    started = now()
    texts = read_texts(data, text_column, encoding)
    inputs, hashing_s = file_records(data)
    texts, counts = scrub_all(texts, scrub_kinds) if scrub_kinds else (texts, None)
    tokenizer = train_tokenizer(texts, vocab_size, lowercase, min_frequency,
                                extra_special=PLACEHOLDERS if scrub_kinds else [])
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    path = save_tokenizer(tokenizer, out_dir)
    config = {"stage": "tokenize", "data": [str(p) for p in data], "vocab_size": vocab_size, "text_column": text_column,
              "lowercase": lowercase, "min_frequency": min_frequency, "encoding": encoding}
    write_manifest(out_dir, build_manifest("tokenizer", inputs, [], config, command, started, record_host,
                                           scrub_record(scrub_kinds, counts), hashing_s))
    return {"path": path, "vocab_size": tokenizer.get_vocab_size(), "n_documents": len(texts)}

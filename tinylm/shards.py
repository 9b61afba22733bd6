"""Token shards: a corpus encoded once into a memory-mapped token stream, cut into packed rows on the fly.

The stream is every document's token ids followed by [SEP], stored as uint16 where the vocabulary fits
(uint32 otherwise). It is cached under a key made of the corpus files' SHA-256, the tokenizer's and the reading
options, so a second run on the same corpus starts training at once. Training reads rows straight from the
memory map: the memory a run needs does not grow with the corpus.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from tokenizers import Tokenizer

from tinylm.data import iter_records, token_stream
from tinylm.errors import TinyLMError
from tinylm.files import read_json, write_json
from tinylm.pii import scrub_all
from tinylm.tokenizer import SEP

FORMAT_VERSION = 1
TOKENS_FILE, META_FILE = "tokens.bin", "meta.json"
CHUNK_CHARS = 1 << 20  # documents are encoded in batches of about this much text, in parallel by tokenizers


def default_cache_dir() -> Path:
    return Path(os.environ.get("TINYLM_CACHE") or Path.home() / ".cache" / "tinylm") / "tokens"


def corpus_key(inputs: list[dict], tokenizer_path: Path, text_column: str, encoding: str,
               scrub_kinds: tuple[str, ...] | None) -> str:
    """What the token stream depends on: the input files' hashes (from provenance), the tokenizer, the options."""
    digest = hashlib.sha256()
    tokenizer_sha = hashlib.sha256(Path(tokenizer_path).read_bytes()).hexdigest()
    parts = {"version": FORMAT_VERSION, "inputs": [r["sha256"] for r in inputs], "tokenizer": tokenizer_sha,
             "text_column": text_column, "encoding": encoding, "scrub": list(scrub_kinds or [])}
    digest.update(json.dumps(parts, sort_keys=True).encode())
    return digest.hexdigest()[:24]


@dataclass
class TokenShards:
    tokens: np.ndarray  # memory-mapped 1-D stream
    meta: dict
    path: Path


def open_shards(folder: Path) -> TokenShards:
    """Open a cache entry; ValueError if it is damaged (its size must match what meta.json says)."""
    try:
        meta = read_json(folder / META_FILE, default=None)
        if meta is None:
            raise ValueError(f"{META_FILE} is unreadable")
        dtype, n_tokens = np.dtype(meta["dtype"]), int(meta["n_tokens"])
        if (folder / TOKENS_FILE).stat().st_size != n_tokens * dtype.itemsize or n_tokens <= 0:
            raise ValueError("size mismatch")
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"damaged token cache {folder}: {e}") from None
    return TokenShards(np.memmap(folder / TOKENS_FILE, dtype=dtype, mode="r", shape=(n_tokens,)), meta, folder)


def encode_corpus(paths: list[Path], tokenizer: Tokenizer, key: str, cache_dir: Path | None = None,
                  text_column: str = "text", encoding: str = "utf-8", scrub_kinds: tuple[str, ...] | None = None,
                  quiet: bool = False, console=None) -> TokenShards:
    """The corpus as token shards: from the cache when this key was encoded before, else encoded now (streamed)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    folder = cache_dir / key
    if folder.is_dir():
        try:
            shards = open_shards(folder)
            if console is not None:
                console.print(f"tokens from cache {folder} ({shards.meta['n_tokens']:,} tokens)")
            return shards
        except ValueError as e:
            if console is not None:
                console.print(f"note: {e}; encoding the corpus again")
            shutil.rmtree(folder, ignore_errors=True)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as e:
        raise TinyLMError(f"cannot write the token cache in {cache_dir}: {e.strerror}; set TINYLM_CACHE or "
                          "--cache-dir to a writable folder") from None
    try:
        meta = _encode_into(tmp / TOKENS_FILE, paths, tokenizer, text_column, encoding, scrub_kinds, quiet, console)
        meta["key"] = key
        write_json(tmp / META_FILE, meta)
        for name in (TOKENS_FILE, META_FILE):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        try:
            os.rename(tmp, folder)
        except OSError:  # another run encoded the same corpus meanwhile: theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TinyLMError(f"cannot write the token cache in {cache_dir}: {e.strerror}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_shards(folder)


def _encode_into(out: Path, paths, tokenizer: Tokenizer, text_column: str, encoding: str, scrub_kinds,
                 quiet: bool, console) -> dict:
    sep_id = tokenizer.token_to_id(SEP)
    dtype = np.uint16 if tokenizer.get_vocab_size() <= 1 << 16 else np.uint32
    total_bytes = sum(_size(p) for p in paths)
    counts: dict[str, int] = dict.fromkeys(scrub_kinds or (), 0)
    n_tokens = n_docs = chars = 0
    start = time.perf_counter()

    def flush(batch: list[str], f):
        nonlocal n_tokens, n_docs
        if scrub_kinds:
            batch, found = scrub_all(batch, scrub_kinds)
            for kind, n in found.items():
                counts[kind] += n
        stream = token_stream(tokenizer, batch, dtype)
        release_memory()
        f.write(stream.tobytes())
        n_tokens += stream.size
        n_docs += int(np.count_nonzero(stream == sep_id))

    progress = Progress(TextColumn("[bold]encode"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                        TextColumn("{task.fields[rate]} MB/s"), TimeElapsedColumn(), console=console,
                        disable=quiet or console is None, transient=True)
    with open(out, "wb") as f, progress:
        task = progress.add_task("encode", total=max(total_bytes, 1), rate="-")
        batch, size = [], 0
        for record in iter_records(paths, text_column, encoding=encoding):
            if not record.text.strip():
                continue
            batch.append(record.text)
            size += len(record.text)
            if size >= CHUNK_CHARS:
                flush(batch, f)
                chars += size
                progress.update(task, completed=chars, rate=f"{chars / 1e6 / (time.perf_counter() - start):.1f}")
                batch, size = [], 0
        flush(batch, f)
    if n_tokens == 0:
        raise TinyLMError("the corpus produced no tokens")
    seconds = time.perf_counter() - start
    return {"version": FORMAT_VERSION, "dtype": np.dtype(dtype).name, "n_tokens": n_tokens, "n_documents": n_docs,
            "bytes": total_bytes, "encode_s": round(seconds, 3), "mb_per_s": round(total_bytes / 1e6 / seconds, 2),
            "scrub_counts": counts if scrub_kinds else None}


def release_memory():
    """Hand freed heap memory back to the OS. glibc keeps it otherwise, and the fragments left by encoding
    hundreds of chunks made training on a 500 MB corpus a 220 MB bigger process than on a 50 MB one."""
    if (libc := _glibc()) is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc():
    """glibc, where this process runs on it; None elsewhere (nothing to hand back then)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def _size(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*.txt") if p.is_file())
    return path.stat().st_size if path.is_file() else 0

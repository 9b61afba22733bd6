"""provenance.json: what a model folder was built from (input hashes, parent checkpoints, configuration, versions).

Inputs are hashed by streaming 1 MiB chunks, so memory stays flat for any corpus size. Never recorded: the text
itself, PII values (only counts per kind), environment variables, user names; the host name only on request.
"""

from __future__ import annotations

import hashlib
import platform
import shlex
import sys
import socket
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from tinylm.devices import console
from tinylm.errors import TinyLMError
from tinylm.files import PROVENANCE_FILE, TOKENIZER_FILE, WEIGHTS_FILE, read_json, write_json
from tinylm.pii import PLACEHOLDERS

CHUNK = 1 << 20


def sha256_file(path: Path) -> tuple[str, int, int]:
    """(hex digest, size in bytes, line count), read in 1 MiB chunks."""
    digest, size, lines = hashlib.sha256(), 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
    return digest.hexdigest(), size, lines


def file_record(path: Path) -> dict:
    """One input as given: a file (sha256, bytes, lines), or a folder of .txt documents (one hash per file, and
    a folder hash over their names and hashes)."""
    path = Path(path)
    if path.is_dir():
        files = []
        folder = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*.txt") if p.is_file()):
            sha, size, lines = sha256_file(f)
            name = str(f.relative_to(path))
            folder.update(f"{name}\0{sha}\n".encode())
            files.append({"path": name, "sha256": sha, "bytes": size, "lines": lines})
        return {"path": str(path), "kind": "folder", "sha256": folder.hexdigest(),
                "bytes": sum(f["bytes"] for f in files), "documents": len(files), "files": files}
    sha, size, lines = sha256_file(path)
    return {"path": str(path), "kind": "file", "sha256": sha, "bytes": size, "lines": lines}


def file_records(paths: list[Path]) -> tuple[list[dict], float]:
    """Records for every input and the seconds spent hashing (reported as the overhead)."""
    start = time.perf_counter()
    records = [file_record(p) for p in paths]
    return records, time.perf_counter() - start


def checkpoint_digest(folder: Path) -> str:
    """The identity of a checkpoint: SHA-256 of its weights, or of tokenizer.json for a tokenizer-only folder."""
    folder = Path(folder)
    target = folder / WEIGHTS_FILE
    if not target.is_file():
        target = folder / TOKENIZER_FILE
    return sha256_file(target)[0]


def read_manifest(folder: Path) -> dict | None:
    return read_json(Path(folder) / PROVENANCE_FILE, default=None)


def parent_record(folder: Path, role: str) -> dict:
    """A parent: its role, path, digest, kind, and its own parents (so the chain travels with every child)."""
    parent = read_manifest(folder) or {}
    return {"role": role, "path": str(folder), "sha256": checkpoint_digest(folder), "kind": parent.get("kind"),
            "parents": parent.get("parents", [])}


def scrub_record(kinds: tuple[str, ...] | None, counts: dict[str, int] | None = None) -> dict:
    """What the manifest says about scrubbing: on/off, which kinds, how many of each were replaced (never values)."""
    if not kinds:
        return {"enabled": False}
    return {"enabled": True, "kinds": list(kinds), "counts": counts or {}}


def scrubbed_kinds(folder: Path) -> tuple[str, ...] | None:
    """The PII kinds a tokenizer or checkpoint was built with (from its manifest), or None."""
    settings = (read_manifest(folder) or {}).get("scrub_pii") or {}
    return tuple(settings["kinds"]) if settings.get("enabled") else None


def resolve_scrub(asked: tuple[str, ...] | None, parent_dir: Path, tokenizer) -> tuple[str, ...] | None:
    """Scrubbing is inherited down the chain (a scrubbed tokenizer or base scrubs its children's data too).
    Asking for it on a tokenizer trained without it is refused: its vocabulary has no placeholder tokens, and
    its pieces were learned from the raw values."""
    inherited = scrubbed_kinds(parent_dir)
    if asked and tokenizer.token_to_id(PLACEHOLDERS[0]) is None:
        raise TinyLMError(f"--scrub-pii needs a tokenizer trained with it: the one in {parent_dir} has no "
                          f"{PLACEHOLDERS[0]} token; run `tinylm tokenize ... --scrub-pii` first")
    if inherited and asked and set(asked) != set(inherited):
        console.print(f"note: {parent_dir} was built scrubbing {', '.join(inherited)}; scrubbing "
                      f"{', '.join(sorted(set(asked) | set(inherited)))}")
    kinds = tuple(sorted(set(asked or ()) | set(inherited or ())))
    return kinds or None


def versions() -> dict:
    from tinylm import __version__

    found = {"tinylm": __version__, "python": platform.python_version()}
    for package in ("torch", "tokenizers"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def command_line() -> str:
    return shlex.join(["tinylm", *sys.argv[1:]])


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_manifest(kind: str, inputs: list[dict], parents: list[dict], config: dict, command: str, started: str,
                   record_host: bool = False, scrub: dict | None = None, hashing_s: float = 0.0) -> dict:
    """The manifest; scrub is {"enabled", "kinds", "counts"} (counts only: values are never recorded)."""
    manifest = {"format": 1, "kind": kind, "inputs": inputs, "parents": parents, "config": config,
                "command": command, "versions": versions(), "started": started, "finished": now(),
                "hashing_s": round(hashing_s, 4), "scrub_pii": scrub or {"enabled": False}}
    if record_host:
        manifest["host"] = socket.gethostname()  # local call, no network; recorded only with --record-host
    return manifest


def write_manifest(folder: Path, manifest: dict) -> Path:
    path = Path(folder) / PROVENANCE_FILE
    write_json(path, manifest)
    return path

"""`tinylm inspect`: a readable (or JSON) summary of a model folder's provenance.json, and --verify."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinylm.errors import TinyLMError
from tinylm.files import ARGS_FILE, CONFIG_FILE, METRICS_FILE, PROVENANCE_FILE, WEIGHTS_FILE, read_json
from tinylm.provenance import checkpoint_digest, file_record, read_manifest

SIZE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings")


def parameter_count(folder: Path) -> int | None:
    """From the safetensors header alone: no tensor is read."""
    from safetensors import safe_open

    path = folder / WEIGHTS_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            total = 0
            for name in f.keys():
                count = 1
                for dim in f.get_slice(name).get_shape():
                    count *= dim
                total += count
            return total
    except Exception:  # a damaged file: the summary still shows everything else
        return None


def last_metrics(folder: Path) -> dict | None:
    try:
        lines = [line for line in (folder / METRICS_FILE).read_text(encoding="utf-8").splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def chain(parents: list[dict], depth: int = 0) -> list[dict]:
    """The parents flattened, nearest first, each with its depth (1 = direct parent)."""
    rows = []
    for parent in parents:
        rows.append({k: parent.get(k) for k in ("role", "kind", "path", "sha256")} | {"depth": depth + 1})
        rows += chain(parent.get("parents") or [], depth + 1)
    return rows


def inspect_folder(folder: Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise TinyLMError(f"{folder} is not a folder")
    manifest = read_manifest(folder)
    if manifest is None:
        raise TinyLMError(f"{folder} has no readable {PROVENANCE_FILE}: it was not written by this version of tinylm "
                          "(re-create it with `tinylm tokenize/pretrain/finetune/export`)")
    config = read_json(folder / CONFIG_FILE, default={})
    args = read_json(folder / ARGS_FILE, default={})
    id2label = config.get("id2label") or {}
    return {
        "folder": str(folder), "kind": manifest.get("kind"), "sha256": checkpoint_digest(folder),
        "sizes": {k: config[k] for k in SIZE_KEYS if k in config}, "parameters": parameter_count(folder),
        "labels": [id2label[k] for k in sorted(id2label, key=int)],
        "inputs": manifest.get("inputs", []), "parents": chain(manifest.get("parents", [])),
        "scrub_pii": manifest.get("scrub_pii"), "best": args.get("best"), "metrics": last_metrics(folder),
        "command": manifest.get("command"), "started": manifest.get("started"), "finished": manifest.get("finished"),
        "versions": manifest.get("versions"), "host": manifest.get("host"), "hashing_s": manifest.get("hashing_s"),
        "manifest": manifest,
    }


def known_hashes(summary: dict) -> dict[str, str]:
    """sha256 -> where it was an input: this folder's inputs and those of every parent folder still on disk
    whose digest still matches (a parent that moved or changed is skipped rather than trusted)."""
    found = {}

    def add(manifest: dict, owner: str):
        for record in manifest.get("inputs", []):
            found.setdefault(record["sha256"], f"{record['path']} ({record.get('role', 'train')} {owner})")
            for f in record.get("files", []):
                found.setdefault(f["sha256"], f"{record['path']}/{f['path']} ({owner})")

    add(summary["manifest"], f"input of this {summary['kind']}")
    for parent in summary["parents"]:
        path = Path(parent["path"] or "")
        if path.is_dir() and (read_manifest(path) is not None) and checkpoint_digest(path) == parent["sha256"]:
            add(read_manifest(path), f"input of parent {parent['kind']} {path}")
    return found


def verify_files(summary: dict, paths: list[Path]) -> list[dict]:
    hashes = known_hashes(summary)
    results = []
    for path in paths:
        if not Path(path).exists():
            raise TinyLMError(f"{path} does not exist")
        sha = file_record(path)["sha256"]
        results.append({"path": str(path), "sha256": sha, "trained_on": sha in hashes, "as": hashes.get(sha)})
    return results


def print_summary(out: Console, s: dict):
    out.print(f"[bold]{s['folder']}[/]  kind [bold]{s['kind']}[/]  sha256 {s['sha256'][:16]}…", highlight=False)
    if s["sizes"]:
        params = f"{s['parameters']:,} parameters; " if s["parameters"] else ""
        out.print("model: " + params + ", ".join(f"{k} {v}" for k, v in s["sizes"].items()), highlight=False)
    if s["labels"]:
        out.print(f"labels: {', '.join(s['labels'])}", highlight=False)
    inputs = Table("input", "role", "bytes", "lines/docs", "sha256", title="built from these files")
    inputs.columns[4].overflow = "fold"  # a hash is only useful whole
    for r in s["inputs"]:
        inputs.add_row(r["path"], r.get("role", "train"), f"{r['bytes']:,}", str(r.get("lines", r.get("documents"))),
                       r["sha256"])
    out.print(inputs)
    if s["parents"]:
        parents = Table("depth", "role", "kind", "path", "sha256", title="parent chain")
        for p in s["parents"]:
            parents.add_row(str(p["depth"]), p["role"], str(p["kind"]), p["path"], p["sha256"][:16] + "…")
        out.print(parents)
    scrub = s["scrub_pii"] or {}
    if scrub.get("enabled"):
        counts = ", ".join(f"{k} {v}" for k, v in scrub.get("counts", {}).items())
        out.print(f"PII scrubbing: on ({', '.join(scrub['kinds'])}); replaced: {counts or 'counts not recorded'}",
                  highlight=False)
    else:
        out.print("PII scrubbing: off")
    if s["best"]:
        out.print("best: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in s["best"].items()), highlight=False)
    if s["metrics"]:
        out.print(f"last metrics: {json.dumps(s['metrics'])}", highlight=False)
    versions = ", ".join(f"{k} {v}" for k, v in (s["versions"] or {}).items())
    out.print(f"command: {s['command']}\nrun: {s['started']} → {s['finished']}; {versions}"
              + (f"; host {s['host']}" if s["host"] else ""), highlight=False)
    for v in s.get("verify", []):
        verdict = f"[green]AMONG THE INPUTS[/] as {v['as']}" if v["trained_on"] else "[yellow]not among the training inputs[/]"
        out.print(f"verify {v['path']} (sha256 {v['sha256'][:16]}…): {verdict}", highlight=False)

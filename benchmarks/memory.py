"""Peak memory of `tinylm pretrain` against corpus size, and the speed of encoding a corpus into token shards.

    python benchmarks/memory.py                      # 50 MB and 500 MB corpora (generated once into --workdir)
    python benchmarks/memory.py --sizes-mb 5,50      # a quick version

Each corpus is generated (invoice-like text, one document per line), a tokenizer is trained once on a 5 MB
sample, and `tinylm pretrain --preset small --max-steps N` runs on each corpus in its own process. The peak
RSS of each process (os.wait4's ru_maxrss: encoding the corpus and training included) is printed side by side;
it must not grow with the corpus (target ratio <= 1.2). The token cache is cleared first so that both runs
encode; encoding speed is compared with tokenizers' own parallel batch encoder on the same text.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("invoice rechnung total summe net netto vat mwst tax due date datum payment zahlung bank iban account "
         "customer kunde supplier lieferant order bestellung item position quantity menge price preis unit "
         "hardware software licence lizenz travel reise hotel flight taxi office paper toner consulting "
         "beratung hours stunden maintenance wartung cloud subscription abo shipping versand discount rabatt "
         "eur usd gmbh ltd inc street strasse berlin munich london invoice-no reference terms days").split()


def generate(path: Path, megabytes: int, seed: int = 0):
    """A deterministic invoice-like corpus of about `megabytes` MB, one document per line."""
    if path.is_file() and path.stat().st_size >= megabytes * 10**6:
        return
    rng = random.Random(seed)
    target = megabytes * 10**6
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < target:
            lines = []
            for _ in range(1000):
                n = rng.randint(20, 300)
                words = [rng.choice(WORDS) if rng.random() < 0.8 else str(rng.randint(1, 99999)) for _ in range(n)]
                lines.append(" ".join(words) + "\n")
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk)


def run_measured(cmd: list[str], env: dict) -> tuple[float, float]:
    """(peak RSS in MiB of that process alone, seconds)."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{process.stderr.read()}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def encode_reference(corpus: Path, tokenizer_dir: Path, megabytes: int = 50) -> float:
    """tokenizers' own parallel batch encoder on the first `megabytes` MB, in memory: MB/s."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    texts, size = [], 0
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            texts.append(line)
            size += len(line)
            if size >= megabytes * 10**6:
                break
    start = time.perf_counter()
    getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)(texts, add_special_tokens=False)
    return size / 1e6 / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", default="50,500")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench-memory")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes_mb.split(",")]
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TINYLM_CACHE": str(work / "cache")}
    tinylm = [sys.executable, "-m", "tinylm"]

    generate(work / "sample.txt", 5, seed=1)
    if not (work / "tok" / "tokenizer.json").is_file():
        subprocess.run([*tinylm, "tokenize", work / "sample.txt", "--out", work / "tok", "--vocab-size", "8192"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
    rows = []
    for mb in sizes:
        corpus = work / f"corpus-{mb}mb.txt"
        generate(corpus, mb)
        shutil.rmtree(work / "cache", ignore_errors=True)
        cmd = [*tinylm, "pretrain", str(corpus), "--tokenizer", str(work / "tok"), "--out", str(work / f"base-{mb}"),
               "--preset", "small", "--max-steps", str(args.steps), "--overwrite", "--quiet"]
        rss, seconds = run_measured(cmd, env)
        meta = next((work / "cache" / "tokens").iterdir()) / "meta.json"
        import json

        info = json.loads(meta.read_text())
        rows.append((mb, corpus.stat().st_size / 1e6, rss, seconds, info["mb_per_s"], info["n_tokens"]))
    reference = encode_reference(work / f"corpus-{sizes[0]}mb.txt", work / "tok", sizes[0])

    print(f"{'corpus':>10} {'tokens':>12} {'peak RSS MiB':>13} {'run s':>7} {'encode MB/s':>12}")
    for mb, real_mb, rss, seconds, speed, tokens in rows:
        print(f"{real_mb:8.0f}MB {tokens:12,} {rss:13,.0f} {seconds:7.0f} {speed:12.1f}")
    print(f"\npeak RSS ratio {rows[-1][1]:.0f} MB / {rows[0][1]:.0f} MB corpus: {rows[-1][2] / rows[0][2]:.2f} "
          "(target <= 1.2)")
    print(f"tokenizers' batch encoder alone, in memory, on the first {sizes[0]} MB: {reference:.1f} MB/s; tinylm's "
          f"streamed encoding into shards of that corpus: {rows[0][4]:.1f} MB/s ({rows[0][4] / reference:.0%} of it)")


if __name__ == "__main__":
    main()

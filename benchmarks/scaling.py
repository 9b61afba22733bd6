"""Pretraining tokens/s on one process against several (torchrun, DistributedDataParallel), at one global batch.

    python benchmarks/scaling.py [--preset small] [--steps 60] [--global-batch 32] [--processes 2] [--device cpu]

Each run is `tinylm pretrain` as a user starts it, on the bundled corpus:
  1 process, batch 32 / 1 process, batch 16 x --grad-accum 2 / torchrun 2 processes, batch 16 each.
The pace is the tokens/s that rank 0 logs between step 10 and the last (start-up and the first, slower steps
left out). On one 2-core CPU two processes share the cores a single process already uses (one thread each
instead of two), so little gain is expected there: the point is that the result is the same training (the final
losses are printed beside the pace); the gain comes with a core, a socket, a GPU or a machine per process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinylm.report import read_metrics  # noqa: E402
from tinylm.devices import cpu_name  # noqa: E402


def tinylm(args: list[str], processes: int = 1) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
    return [sys.executable, *launcher, "-m", "tinylm", *args]


def pace(run_dir: Path, skip: int = 10) -> tuple[float, float]:
    """(tokens/s after step `skip`, final loss) from rank 0's metrics.jsonl."""
    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if "tokens" in r]
    first = next(r for r in records if r["step"] >= skip)
    last = records[-1]
    return (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"]), last["loss"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "corpus.jsonl")
    args = parser.parse_args()
    n, micro = args.processes, args.global_batch // args.processes
    if micro * n != args.global_batch:
        parser.error("--global-batch must be a multiple of --processes")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "TINYLM_CACHE": str(tmp / "cache")}
        subprocess.run(tinylm(["tokenize", str(args.data), "--out", str(tmp / "tokenizer"), "--vocab-size", "8000"]),
                       check=True, capture_output=True, env=env)
        common = [str(args.data), "--tokenizer", str(tmp / "tokenizer"), "--preset", args.preset, "--precision", "fp32", "--device", args.device, "--quiet", "--overwrite",
                  "--save-minutes", "1000"]
        runs = [
            (f"1 process, batch {args.global_batch}", 1, ["--batch-size", str(args.global_batch)]),
            (f"1 process, batch {micro} x grad-accum {n}", 1, ["--batch-size", str(micro), "--grad-accum", str(n)]),
            (f"{n} processes (torchrun), batch {micro} each", n, ["--batch-size", str(micro)]),
        ]
        results = []
        subprocess.run(tinylm(["pretrain", *common, "--max-steps", "5", "--out", str(tmp / "warm")]), env=env,
                       check=True, capture_output=True)  # encodes the corpus once, into the cache
        for name, processes, extra in runs:
            out = tmp / f"run{len(results)}"
            done = subprocess.run(tinylm(["pretrain", *common, *extra, "--max-steps", str(args.steps), "--out", str(out)],
                                         processes), env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{name} failed:\n{done.stderr[-2000:]}")
            results.append((name, *pace(out)))

    print(f"tinylm pretrain, preset {args.preset}, {args.steps} steps, global batch {args.global_batch}, "
          f"fp32 on {args.device}; {cpu_name()}, {os.cpu_count()} cores")
    reference = results[0][1]
    print(f"{'run':<42} {'tokens/s':>10} {'ratio':>6} {'final loss':>11}")
    for name, rate, loss in results:
        print(f"{name:<42} {rate:>10,.0f} {rate / reference:>6.2f} {loss:>11.4f}")


if __name__ == "__main__":
    main()

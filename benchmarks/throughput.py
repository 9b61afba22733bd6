"""Pretraining throughput and model FLOPs utilisation: tinylm against transformers' BertForMaskedLM, one run.

    python benchmarks/throughput.py                 # small (256/4/4/1024) and base (768/12/12/3072) sizes
    python benchmarks/throughput.py --sizes small --steps 20

Both sides train the same model config on the same batches (vocab 8192, sequence 128, batch 32, dropout 0.1,
15% masking, AdamW, gradient clipping). tinylm runs its own training step (tinylm.train.training_step, batches
from tinylm.pretrain.MLMBatches); transformers runs BertForMaskedLM with attn_implementation="sdpa" and
torch.optim.AdamW, in a hand-written loop. Both use bf16 autocast only where the processor runs bf16 natively.

MFU = useful training FLOPs per second / the matmul peak this script measures in the same precision, where
useful FLOPs per token = 3 x forward, and forward = layers x (8 H^2 + 4 H F + 4 T H) + m x (2 H^2 + 2 H V):
the projections (Q, K, V, output), the feed-forward, the attention scores and weighted sum, and the MLM head
(transform + decoder) at the masked share m of the positions only. Embedding lookups, norms, softmax and the
optimizer are not counted. The same useful FLOPs are credited to transformers (which also computes the
decoder at the 85% of positions that are not predicted).
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import asdict

import numpy as np
import torch

from tinylm.config import BertConfig, TrainArgs
from tinylm.data import PackedRows
from tinylm.model import BertForMaskedLM
from tinylm.pretrain import MLMBatches
from tinylm.devices import autocast, cpu_has_native_bf16, cpu_name, resolve_device
from tinylm.distributed import World
from tinylm.train import learning_rate, make_optimizer, training_step

SIZES = {
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
VOCAB, SEQ, BATCH = 8192, 128, 32
IDS = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}


def matmul_peak(dtype: torch.dtype, device: torch.device) -> float:
    """The best FLOP/s of large square matmuls in `dtype`: the ceiling MFU is measured against."""
    best = 0.0
    for n in (1024, 2048, 3072) if device.type == "cpu" else (4096, 8192):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b
        reps = max(2, int((2e10 if device.type == "cpu" else 2e14) / (2 * n ** 3)))
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start))
    return best


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def useful_flops_per_token(config: BertConfig, masked_share: float) -> float:
    H, F, L, V, T = (config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size, SEQ)
    forward = L * (8 * H * H + 4 * H * F + 4 * T * H) + masked_share * (2 * H * H + 2 * H * V)
    return 3 * forward


def batches(batch_size: int, seed: int = 0) -> MLMBatches:
    stream = np.random.default_rng(seed).integers(5, VOCAB, size=batch_size * (SEQ - 1) * 64)
    stream[::97] = IDS["[SEP]"]  # document boundaries, as in a packed corpus
    return MLMBatches(PackedRows(stream, SEQ, IDS["[CLS]"], IDS["[PAD]"]), batch_size, seed, IDS, VOCAB, 0.15)


class TinylmSide:
    """tinylm's own training step on its own batches (gather + masking included, as in `tinylm pretrain`)."""

    def __init__(self, config: BertConfig, precision: str, device, total_steps: int, batch_size: int,
                 compile_model: bool = False):
        torch.manual_seed(0)
        self.model = BertForMaskedLM(config).to(device).train()
        self.runner = torch.compile(self.model) if compile_model else self.model
        self.optimizer = make_optimizer(self.model, 1e-4, 0.01)
        self.args, self.total_steps, self.precision = TrainArgs(lr=1e-4, warmup_ratio=0.0), total_steps, precision
        self.batch_at, self.world, self.masked = batches(batch_size), World(device=device), []

    def step(self, i: int):
        micro = self.batch_at(i)
        self.masked.append(int((micro[0].inputs["labels"] != -100).sum()))
        training_step(self.runner, self.optimizer, micro, learning_rate(self.args, i, self.total_steps),
                      self.args.grad_clip, self.precision, self.world)


class TransformersSide:
    """BertForMaskedLM with SDPA attention and torch.optim.AdamW, in the usual hand-written loop."""

    def __init__(self, config: BertConfig, precision: str, device, total_steps: int, batch_size: int,
                 compile_model: bool = False):
        import transformers

        torch.manual_seed(0)
        hf_config = transformers.BertConfig(**asdict(config), attn_implementation="sdpa")
        self.model = transformers.BertForMaskedLM(hf_config).to(device).train()
        self.runner = torch.compile(self.model) if compile_model else self.model
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.01)
        self.batch_at, self.precision, self.device = batches(batch_size), precision, device

    def step(self, i: int):
        inputs = {k: v.to(self.device) for k, v in self.batch_at(i)[0].inputs.items()}
        with autocast(self.precision, self.device):
            loss = self.runner(**inputs).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()


def measure(sides: dict, warmup: int, steps: int, rounds: int, device, batch_size: int) -> dict[str, float]:
    """Warm every side up, then time `rounds` rounds of `steps` steps, the sides taking turns within each round
    (so drift on a shared machine hits both); the best round of each side counts."""
    for side in sides.values():
        for i in range(warmup):
            side.step(i)
    best = dict.fromkeys(sides, 0.0)
    for r in range(rounds):
        for name, side in sides.items():
            sync(device)
            start = time.perf_counter()
            for i in range(steps):
                side.step(warmup + r * steps + i)
            sync(device)
            best[name] = max(best[name], batch_size * SEQ * steps / (time.perf_counter() - start))
    return best


def profile(side: TinylmSide, first_step: int, device, steps: int = 5):
    """The operators of a few training steps by self time (on the GPU: kernel time, so the gap to the wall
    clock is launch and synchronisation overhead)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    start = time.perf_counter()
    with torch_profile(activities=activities) as prof:
        for i in range(steps):
            side.step(first_step + i)
        sync(device)
    wall = (time.perf_counter() - start) / steps
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15))
    if device.type == "cuda":
        busy = sum(e.self_device_time_total for e in prof.key_averages()) / 1e6 / steps
        print(f"per step: wall {wall * 1e3:.2f} ms, GPU kernels {busy * 1e3:.2f} ms ({busy / wall:.0%} busy)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="small,base")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round at the small size")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds at the small size (best counts)")
    parser.add_argument("--base-steps", type=int, default=2, help="timed steps at the base size")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--base-warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=BATCH, help="rows of 128 tokens per step")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="also time both sides with torch.compile")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print where tinylm's step spends its time")
    args = parser.parse_args()

    device = resolve_device(args.device)
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
    precision = args.precision if args.precision != "auto" else ("bf16" if native else "fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    what = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"{cpu_name()}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"
    print(f"device: {what}; torch {torch.__version__}; precision {precision} (native bf16: {native})")
    peak = matmul_peak(dtype, device)
    print(f"measured {precision} matmul peak: {peak / 1e9:,.1f} GFLOP/s (measured again at the end; the higher counts)")
    print("useful FLOPs/token = 3 x [layers x (8H^2 + 4HF + 4TH) + masked share x (2H^2 + 2HV)]\n")

    header = f"{'config':38} {'tinylm tok/s':>12} {'HF tok/s':>9} {'ratio':>6} {'MFU tinylm':>10} {'MFU HF':>7}"
    print(header)
    print("-" * len(header))
    for size in args.sizes.split(","):
        config = BertConfig(vocab_size=VOCAB, max_position_embeddings=512, **SIZES[size])
        steps, rounds = (args.steps, args.rounds) if size == "small" else (args.base_steps, 1)
        warmup = args.warmup if size == "small" else args.base_warmup
        total = warmup + steps * rounds
        sides = {"tinylm": TinylmSide(config, precision, device, total, args.batch)}
        if args.compile:
            sides["compiled"] = TinylmSide(config, precision, device, total, args.batch, compile_model=True)
        if not args.skip_hf:
            sides["hf"] = TransformersSide(config, precision, device, total, args.batch)
            if args.compile:
                sides["hf compiled"] = TransformersSide(config, precision, device, total, args.batch, True)
        rates = measure(sides, warmup, steps, rounds, device, args.batch)
        peak = max(peak, matmul_peak(dtype, device))  # a busy moment at the start must not flatter the MFU
        masked_share = np.mean(sides["tinylm"].masked) / (args.batch * SEQ)
        flops = useful_flops_per_token(config, masked_share)
        shape = f"{config.hidden_size}/{config.num_hidden_layers}L/{config.intermediate_size}"
        name = f"{size} {shape} T{SEQ} B{args.batch} {precision}"
        rows = [(name, rates["tinylm"], rates.get("hf"))]
        if "compiled" in rates:
            rows.append((name + " --compile", rates["compiled"], rates.get("hf compiled")))
        for label, ours, theirs in rows:
            if theirs:
                print(f"{label:38} {ours:12,.0f} {theirs:9,.0f} {ours / theirs:6.2f} {ours * flops / peak:10.1%} "
                      f"{theirs * flops / peak:7.1%}", flush=True)
            else:
                print(f"{label:38} {ours:12,.0f} {'-':>9} {'-':>6} {ours * flops / peak:10.1%} {'-':>7}", flush=True)
        if args.profile:
            profile(sides["tinylm"], warmup + steps * rounds, device)
        del sides
    print(f"\nhighest {precision} matmul peak measured in this run: {peak / 1e9:,.1f} GFLOP/s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process (all sides): {rss:,.0f} MiB; masked share of positions {masked_share:.3f}")


if __name__ == "__main__":
    main()

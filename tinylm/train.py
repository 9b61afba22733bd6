"""One training loop for both stages: AdamW, linear warmup and decay, clipping, precision, progress, metrics."""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tinylm.errors import TinyLMError

console = Console(stderr=True, soft_wrap=True)  # stdout stays clean for --json output


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # keyword arguments of the model's forward, labels included
    n_tokens: int  # real (non-padding) tokens, for tokens/s
    epoch_end: bool = False


@dataclass
class LoopConfig:
    max_steps: int
    lr: float
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    log_every: int = 10
    precision: str = "fp32"  # resolved: fp32 or bf16
    description: str = "training"
    quiet: bool = False
    extra_log: dict = field(default_factory=dict)


def cpu_has_native_bf16() -> bool:
    """True where bf16 matmuls run in hardware (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested not in ("auto", "fp32", "bf16"):
        raise TinyLMError(f"--precision must be auto, fp32 or bf16, got {requested!r}")
    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_native_bf16()
    if requested == "auto":
        return "bf16" if native else "fp32"
    if requested == "bf16" and not native:
        console.print("[yellow]warning:[/] bf16 is emulated on this processor and much slower than fp32")
    return requested


def resolve_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise TinyLMError("--device cuda was asked for, but no CUDA GPU is available")
    if requested not in ("cpu", "cuda"):
        raise TinyLMError(f"--device must be auto, cpu or cuda, got {requested!r}")
    return torch.device(requested)


def autocast(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights are not decayed (as in BERT)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-6, foreach=True)


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class MetricsLog:
    """metrics.jsonl: one JSON object per line, appended and flushed as it happens."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.write_text("")

    def write(self, record: dict):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def progress_bar(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tok/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=quiet, transient=False,
    )


def train(model: torch.nn.Module, batches: Iterator[Batch], cfg: LoopConfig, log: MetricsLog,
          device: torch.device, on_epoch_end: Callable[[int, int], dict] | None = None) -> dict:
    """Run cfg.max_steps optimisation steps. on_epoch_end(epoch, step) may return figures to log."""
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = linear_schedule(optimizer, math.ceil(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps)
    model.to(device).train()
    start, tokens, epoch, window = time.perf_counter(), 0, 0, []
    last = {}
    with progress_bar(cfg.quiet) as bar:
        task = bar.add_task(cfg.description, total=cfg.max_steps, loss="-", rate="-")
        for step, batch in zip(range(1, cfg.max_steps + 1), batches):
            inputs = {k: v.to(device, non_blocking=True) for k, v in batch.inputs.items()}
            with autocast(cfg.precision, device):
                loss, _ = model(**inputs)
            if not torch.isfinite(loss):
                raise TinyLMError(f"loss became {loss.item()} at step {step}; lower --lr (now {cfg.lr:g}) "
                                  "or check the data; checkpoints saved before this step are kept")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()

            tokens += batch.n_tokens
            window.append(loss.item())
            elapsed = time.perf_counter() - start
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                last = {"step": step, "loss": sum(window) / len(window), "lr": scheduler.get_last_lr()[0],
                        "tokens": tokens, "tokens_per_s": tokens / elapsed, "elapsed_s": elapsed, **cfg.extra_log}
                log.write(last)
                bar.update(task, loss=f"{last['loss']:.4f}", rate=f"{last['tokens_per_s']:,.0f}")
                window = []
            bar.update(task, completed=step)
            if batch.epoch_end:
                epoch += 1
                if on_epoch_end is not None:
                    figures = on_epoch_end(epoch, step)
                    log.write({"step": step, "epoch": epoch, **figures})
                    model.train()
    return {"steps": step, "tokens": tokens, "elapsed_s": time.perf_counter() - start, **last}

"""One training loop for both stages: AdamW, linear warmup and decay, clipping, precision, progress, metrics."""

from __future__ import annotations

import json
import math
import platform
import shlex
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tinylm import distributed
from tinylm.distributed import World
from tinylm.errors import Interrupted, TinyLMError
from tinylm.state import latest_checkpoint, load_state, save_state, saved_run_args

console = Console(stderr=True, soft_wrap=True)  # stdout stays clean for --json output


@dataclass
class Batch:
    """One micro-batch: a step trains on the micro-batches of every process (see tinylm.distributed)."""

    inputs: dict[str, torch.Tensor]  # keyword arguments of the model's forward, labels included
    n_tokens: int  # real (non-padding) tokens, for tokens/s
    n_targets: float  # what its mean loss divides by (masked tokens, documents' class weights)
    epoch: int = 1  # the (1-based) pass over the data this batch belongs to
    epoch_end: bool = False
    epoch_fraction: float = 1.0  # the share of its epoch done once this batch is trained on
    seed: int | None = None  # the dropout RNG's seed for this micro-batch
    rows: np.ndarray | None = None  # which sequences of the data it holds


def derived_seed(*keys: int) -> int:
    """A 63-bit seed from integers (e.g. seed, step, micro-batch): statistically independent streams."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> 1)


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
    save_every: int | None = None  # steps between resumable checkpoints
    save_minutes: float | None = None  # minutes between resumable checkpoints
    keep_checkpoints: int = 2
    save_at_epoch_end: bool = False
    on_nan: str = "stop"  # or "skip": drop the batch and go on
    max_minutes: float | None = None  # time budget: the run's length (and LR schedule) is fitted to it
    step_multiple: int = 1  # with max_minutes: end on a multiple of this (an epoch, for fine-tuning)
    ema_decay: float = 0.0  # > 0: keep a moving average of the weights; on_validate sees (and saves) it
    validate_every: int | None = None  # steps between calls of on_validate, besides every epoch's end and the last step
    compile: bool = False  # run the forward and backward through torch.compile
    extra_log: dict = field(default_factory=dict)


class StopSignals:
    """SIGINT and SIGTERM ask the loop to stop after the current step; a second Ctrl-C stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self.previous = {}

    def _handler(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def cpu_has_native_bf16() -> bool:
    """True where bf16 matmuls run in hardware (AVX-512 BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_name() -> str:
    """The processor's model name, for benchmark and run reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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
    """AdamW; biases and LayerNorm weights are not decayed (as in BERT).

    The fused kernel on CUDA; on the CPU the multi-tensor (foreach) update, since PyTorch 2.13's fused CPU AdamW
    measured ~20x slower per step here (1.8 s against 0.09 s for the tiny preset).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    on_cuda = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-6, fused=on_cuda, foreach=not on_cuda)


class WeightAverage:
    """An exponential moving average of the weights (Polyak averaging, as in Tarvainen & Valpola 2017 and
    TensorFlow's ExponentialMovingAverage with num_updates): after step t,

        average <- d * average + (1 - d) * weights,  d = min(decay, (1 + t) / (10 + t))

    The warm-up of d keeps the memory short (about the last ninth of the steps) until `decay` takes over, so a
    short run is not dragged back to its first, random weights. Validating the average instead of the last
    weights smooths out the noise of the last steps: the epoch chosen is less a matter of luck.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.params]

    def update(self, step: int):
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - d)

    @contextmanager
    def swapped_in(self):
        """The model holds the average inside the block, and its own weights again after it."""
        live = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.average)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, live)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {str(i): t.detach().contiguous().cpu() for i, t in enumerate(self.average)}

    def load(self, tensors: dict[str, torch.Tensor], where: Path):
        if set(tensors) != {str(i) for i in range(len(self.average))} or \
                any(tensors[str(i)].shape != t.shape for i, t in enumerate(self.average)):
            raise TinyLMError(f"{where} does not match the model; was it written by another run?")
        with torch.no_grad():
            for i, t in enumerate(self.average):
                t.copy_(tensors[str(i)])


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warmup, then linear decay to 0 at total_steps. scheduler.shape may be changed later (a time budget
    fits the run's length once its pace is known)."""
    shape = {"warmup": warmup_steps, "total": total_steps}

    def factor(step: int) -> float:
        if step < shape["warmup"]:
            return (step + 1) / shape["warmup"]
        return max(0.0, (shape["total"] - step) / max(1, shape["total"] - shape["warmup"]))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    scheduler.shape = shape
    return scheduler


def fit_to_budget(cfg: "LoopConfig", scheduler, counters: dict, seconds_per_step: float, limit: int):
    """--max-minutes: shorten (or lengthen, up to the step limit) the run and its LR schedule so that it ends
    within the budget at the pace measured so far, on an epoch boundary for fine-tuning (inside the first epoch
    when not even one fits). If the pace slows inside an epoch that no longer fits, that epoch runs on until the
    budget runs out; when it has, the run ends at once: the budget is a limit."""
    step, multiple = counters["step"], cfg.step_multiple
    remaining = 60 * cfg.max_minutes - counters["elapsed_s"]
    steps = step + max(0, int(remaining / max(seconds_per_step, 1e-9)))
    if remaining > 0 and steps >= multiple > 1:
        steps = steps // multiple * multiple
        if steps < step:  # the pace slowed inside an epoch that no longer fits: the budget's end cuts it, not now
            steps = -(-step // multiple) * multiple
    counters["max_steps"] = max(step, 1, min(limit, steps))
    set_length(cfg, scheduler, counters["max_steps"])


def set_length(cfg: "LoopConfig", scheduler, steps: int):
    """The run ends after `steps` steps, and the LR schedule's warmup and decay are scaled to that length."""
    cfg.max_steps = steps
    scheduler.shape.update(warmup=math.ceil(cfg.warmup_ratio * steps), total=steps)


class MetricsLog:
    """metrics.jsonl: one JSON object per line, appended and flushed as it happens."""

    def __init__(self, path: Path, resume: bool = False):
        self.path = Path(path)
        if not resume or not self.path.exists():
            self.path.write_text("")

    def write(self, record: dict):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int):
        """On resume: drop what was logged after the checkpoint, since those steps run again."""
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line + "\n")
            except ValueError:
                continue  # a line torn by the kill
        self.path.write_text("".join(kept), encoding="utf-8")


class NullLog(MetricsLog):
    """The metrics log of a process other than rank 0: rank 0 alone writes metrics.jsonl."""

    def __init__(self):
        pass

    def write(self, record: dict):
        pass

    def truncate_after(self, step: int):
        pass


def progress_bar(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tok/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=quiet, transient=False,
    )


def train(model: torch.nn.Module, batches_at: Callable[[int], list[Batch]], cfg: LoopConfig, log: MetricsLog,
          device: torch.device, out_dir: Path | None = None, run_args: dict | None = None, resume: bool = False,
          on_validate: Callable[[int, int], dict] | None = None, stage_state: dict | None = None,
          world: World | None = None) -> dict:
    """Run the optimisation steps up to cfg.max_steps; batches_at(i) is this process's micro-batches of step
    i + 1 (0-based).

    With out_dir, resumable checkpoints go to out_dir/checkpoints (every cfg.save_every steps / save_minutes,
    and on SIGINT/SIGTERM); resume=True continues from the newest one. stage_state is the stage's own state
    (e.g. the best epoch so far), saved and restored with the rest. on_validate(epoch, step) is called at the end
    of every epoch, every cfg.validate_every steps and after the last step; the figures it returns are logged.
    With several processes (world), every one runs this loop in step; rank 0 alone logs and saves, and paces a
    time budget for all.
    """
    world = world or World(device=device)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = linear_schedule(optimizer, math.ceil(cfg.warmup_ratio * cfg.max_steps), cfg.max_steps)
    stage_state = {} if stage_state is None else stage_state
    counters = {"step": 0, "tokens": 0, "elapsed_s": 0.0, "skipped": 0}
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    if resume and (found := agreed_checkpoint(out_dir, world)) is not None:
        check_same_run(saved_run_args(found), run_args or {}, found)  # before its tensors: a clearer error
        restored = load_state(found, model, optimizer, scheduler, average)
        counters.update({k: v for k, v in restored["counters"].items() if k != "stage"})
        stage_state.update(restored["counters"].get("stage", {}))
        if "max_steps" in counters:  # the length a time budget fitted
            set_length(cfg, scheduler, counters["max_steps"])
        console.print(f"resuming from {found} (step {counters['step']:,} of {cfg.max_steps:,})")
    log.truncate_after(counters["step"])
    runner = distributed.wrap(model, world)
    runner = torch.compile(runner) if cfg.compile else runner  # saved and restored as `model`: plain names

    def save() -> Path | None:
        folder = save_state(out_dir, model, optimizer, scheduler, {**counters, "stage": stage_state},
                            run_args or {}, cfg.keep_checkpoints, average) if world.is_main else None
        world.barrier()  # no process goes on (or exits) before the checkpoint is whole
        return folder

    t0 = clock = time.perf_counter()
    session_tokens, last_save, window, last, limit, paced = 0, time.monotonic(), [], {}, cfg.max_steps, None
    with StopSignals() as stop, progress_bar(cfg.quiet or not world.is_main) as bar:
        task = bar.add_task(cfg.description, total=cfg.max_steps, completed=counters["step"], loss="-", rate="-")
        step = counters["step"]
        while step < cfg.max_steps:
            step += 1
            batches = batches_at(step - 1)
            loss = training_step(runner, optimizer, scheduler, batches, cfg, device, step, out_dir, counters, world)
            if average is not None:
                average.update(step)
            now = time.perf_counter()
            counters.update(step=step, elapsed_s=counters["elapsed_s"] + now - clock)
            clock = now
            if cfg.max_minutes and world.is_main:  # the pace after the first (slower) step: fitted at 3 steps,
                paced = paced or (now, step)         # refitted every 10
                n = step - paced[1]
                if n == 3 or (n and n % 10 == 0) or counters["elapsed_s"] >= 60 * cfg.max_minutes:
                    fit_to_budget(cfg, scheduler, counters, (now - paced[0]) / max(n, 1), limit)
            n_tokens = sum(b.n_tokens for b in batches)
            timed = bool(cfg.save_minutes) and time.monotonic() - last_save >= 60 * cfg.save_minutes
            stopping = stop.received  # taken once: a signal arriving later is acted on after the next step
            if world.size > 1:  # the global loss and tokens, any process's stop signal or save time, rank 0's length
                shared = world.all_sum([loss if loss is not None else 0.0, n_tokens, stopping is not None,
                                        timed, cfg.max_steps if world.is_main else 0])
                loss = None if loss is None else shared[0]
                n_tokens, timed = int(shared[1]), shared[3] > 0
                stopping = (stopping or signal.SIGTERM) if shared[2] else None
                if int(shared[4]) != cfg.max_steps:
                    counters["max_steps"] = int(shared[4])
                    set_length(cfg, scheduler, counters["max_steps"])
            session_tokens += n_tokens
            counters["tokens"] += n_tokens
            if loss is not None:
                window.append(loss)
            if (step % cfg.log_every == 0 or step == cfg.max_steps) and window:
                rate = session_tokens / (now - t0)
                last = {"step": step, "loss": sum(window) / len(window), "lr": scheduler.get_last_lr()[0],
                        "tokens": counters["tokens"], "tokens_per_s": rate, "elapsed_s": counters["elapsed_s"],
                        **cfg.extra_log}
                log.write(last)
                bar.update(task, loss=f"{last['loss']:.4f}", rate=f"{rate:,.0f}")
                window = []
            bar.update(task, completed=step, total=cfg.max_steps)  # a budget may have changed the length
            # A budget may end the run inside an epoch: that part-epoch is validated too.
            batch = batches[0]
            every = cfg.validate_every and step % cfg.validate_every == 0
            if on_validate is not None and (batch.epoch_end or every or step == cfg.max_steps):
                part = {} if batch.epoch_end else {"epoch_fraction": batch.epoch_fraction}
                with average.swapped_in() if average is not None else nullcontext():
                    figures = on_validate(batch.epoch, step)
                log.write({"step": step, "epoch": batch.epoch, **part, **figures})
                model.train()
            due = (cfg.save_every and step % cfg.save_every == 0) or (cfg.save_at_epoch_end and batch.epoch_end) or timed
            if out_dir is not None and step < cfg.max_steps and (due or stopping):
                saved, last_save = save(), time.monotonic()
            if stopping and step < cfg.max_steps:
                where = f"checkpoint saved in {saved}; resume with: {resume_command()}" if out_dir else "nothing saved"
                raise Interrupted(f"stopped by {signal.Signals(stopping).name} after step {step:,}; {where}",
                                  exit_code=128 + stopping)
    return {"steps": counters["step"], "tokens": counters["tokens"], "elapsed_s": counters["elapsed_s"],
            "skipped_steps": counters["skipped"], **last}


def training_step(model, optimizer, scheduler, batches: list[Batch], cfg: LoopConfig, device, step: int,
                  out_dir: Path | None, counters: dict, world: World | None = None) -> float | None:
    """One optimisation step over this process's micro-batches; returns its share of the step's loss, or None
    when a non-finite loss/gradient made it skip the step.

    Each micro-batch's mean loss is weighted by its share of the global batch's targets, so the summed gradient is
    that of the global batch's mean loss however the batch is split (DDP then averages over processes, hence
    the factor world.size).
    """
    size = world.size if world else 1
    local = sum(b.n_targets for b in batches)
    total = world.all_sum([local])[0] if world else local
    shares = [b.n_targets / total if total else 0.0 for b in batches]
    optimizer.zero_grad(set_to_none=True)
    value = None
    for i, (batch, share) in enumerate(zip(batches, shares)):
        if batch.seed is not None:  # dropout depends on the micro-batch, not on which process computes it
            torch.manual_seed(batch.seed)
        inputs = {k: v.to(device, non_blocking=True) for k, v in host_inputs(batch).items()}
        accumulate = model.no_sync() if size > 1 and i < len(batches) - 1 else nullcontext()
        with accumulate:
            with autocast(cfg.precision, device):
                loss, _ = model(**inputs)
            (loss * (share * size)).backward()
        part = loss.detach().float() * share
        value = part if value is None else value + part
    value = value.item()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    if torch.isfinite(norm):  # the same on every process: the gradients are averaged before
        optimizer.step()
        scheduler.step()
        return value
    what = f"the loss became {value}" if not math.isfinite(value) else f"the gradient norm became {norm.item()}"
    if cfg.on_nan != "skip":
        previous = latest_checkpoint(out_dir) if out_dir is not None else None
        kept = f"the last good checkpoint is {previous} (resume with --resume)" if previous else \
            "no checkpoint was saved before it"
        raise TinyLMError(f"{what} at step {step}; lower --lr (now {cfg.lr:g}) or check the data, or pass "
                          f"--on-nan skip to drop such batches; {kept}")
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()  # the schedule stays aligned with the step count
    counters["skipped"] += 1
    console.print(f"[yellow]warning:[/] {what} at step {step}; batch skipped ({counters['skipped']} so far)")
    if counters["skipped"] > max(10, cfg.max_steps // 10):
        raise TinyLMError(f"{counters['skipped']} batches skipped for non-finite values by step {step}; "
                          f"lower --lr (now {cfg.lr:g})")
    return None


def agreed_checkpoint(out_dir: Path | None, world: World) -> Path | None:
    """The newest checkpoint to resume from, the same for every process (or one clear error)."""
    found = latest_checkpoint(out_dir) if out_dir is not None else None
    step = int(found.name.split("-")[-1]) if found else -1
    if world.all_sum([step])[0] != step * world.size:
        raise TinyLMError(f"the processes see different checkpoints in {out_dir} (process {world.rank}: "
                          f"{found or 'none'}); on several machines, --out must be a folder they all share")
    return found


def host_inputs(batch: Batch) -> dict:
    """The batch's tensors, less an attention mask without padding (packed pretraining rows have none). It is
    checked here, on the host: the model would check it on the GPU, a synchronisation every step (and a graph
    break under --compile), only to drop it for SDPA's fastest kernel."""
    mask = batch.inputs.get("attention_mask")
    if mask is not None and mask.device.type == "cpu" and bool(mask.all()):
        return {k: v for k, v in batch.inputs.items() if k != "attention_mask"}
    return batch.inputs


def check_same_run(saved: dict, current: dict, folder: Path):
    """A resume must continue the same run: the same data, configuration and seed."""
    saved, current = flatten(saved), flatten(current)
    changed = [key for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
    if "train.global_batch" in changed:
        raise TinyLMError(f"--resume needs the global batch of the run that wrote {folder}: "
                          f"{saved.get('train.global_batch')} sequences per step then, {current.get('train.global_batch')} "
                          "now (batch size x grad accumulation x processes); set --grad-accum or --batch-size so "
                          "that they match")
    if changed:
        detail = "; ".join(f"{k} {saved.get(k)!r} then, {current.get(k)!r} now" for k in changed[:3])
        raise TinyLMError(f"--resume needs the arguments of the run that wrote {folder}, but they differ ({detail})")


def flatten(d: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1}} -> {"train.lr": 1}, so that a mismatch names the one setting that changed."""
    flat = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_command() -> str:
    words = sys.argv[:]
    if words and words[0].endswith(("tinylm", "__main__.py")):
        words[0] = "tinylm"
    if "--resume" not in words:
        words.append("--resume")
    return " ".join(shlex.quote(w) for w in words)

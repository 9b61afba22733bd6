"""One training loop for both stages: AdamW, linear warmup and decay, clipping, precision, progress, metrics,
resumable checkpoints; and the run-folder and batch helpers both stages set it up with."""

from __future__ import annotations

import json
import math
import shlex
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tinylm import distributed
from tinylm.checkpoint import check_out_dir
from tinylm.config import RunOptions, StageConfig, TrainArgs
from tinylm.devices import autocast, console
from tinylm.distributed import World
from tinylm.errors import Interrupted, TinyLMError
from tinylm.files import METRICS_FILE, SELF_TRAINING_FILE, WEIGHTS_FILE
from tinylm.state import latest_checkpoint, load_state, remove_checkpoints, save_state, saved_run_args



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
class Plan:
    """What a stage decided about its run, and the loop carries out."""

    max_steps: int
    precision: str = "fp32"  # resolved: fp32 or bf16
    description: str = "training"
    steps_per_epoch: int = 1  # a time budget ends the run on a multiple of this (an epoch, for fine-tuning)
    ema_decay: float = 0.0  # > 0: keep a moving average of the weights; on_validate sees (and saves) it
    save_at_epoch_end: bool = False


@dataclass
class LoopState:
    """Where the run stands: saved with every resumable checkpoint, restored on --resume."""

    step: int = 0  # optimisation steps done
    max_steps: int = 0  # the run's length (a time budget refits it)
    tokens: int = 0
    elapsed_s: float = 0.0
    skipped: int = 0  # steps dropped for a non-finite loss or gradient (--on-nan skip)


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


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights are not decayed (as in BERT).

    The fused kernel on CUDA; on the CPU the multi-tensor (foreach) update, since PyTorch 2.13's fused CPU AdamW
    is many times slower per step (docs/performance.md).
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


def learning_rate(args: TrainArgs, steps_done: int, max_steps: int) -> float:
    """The rate after `steps_done` of `max_steps` steps: linear warmup over warmup_ratio of the run, then linear
    decay to 0 at its end. A pure function of the step: nothing to save or restore on resume."""
    warmup = math.ceil(args.warmup_ratio * max_steps)
    if steps_done < warmup:
        return args.lr * ((steps_done + 1) / warmup)
    return args.lr * max(0.0, (max_steps - steps_done) / max(1, max_steps - warmup))


class Budget:
    """--max-minutes: the run's length, fitted to the pace measured so far (after the first, slower step: at 3
    steps, then every 10, and once the budget is spent), on an epoch boundary for fine-tuning."""

    def __init__(self, minutes: float, limit: int, steps_per_epoch: int = 1):
        self.seconds, self.limit, self.multiple = 60 * minutes, limit, steps_per_epoch
        self.start: tuple[float, int] | None = None  # (time, step) where the pace is measured from

    def length(self, state: LoopState, now: float) -> int:
        self.start = self.start or (now, state.step)
        n = state.step - self.start[1]
        if n == 3 or (n and n % 10 == 0) or state.elapsed_s >= self.seconds:
            return self.fit(state.step, state.elapsed_s, (now - self.start[0]) / max(n, 1))
        return state.max_steps

    def fit(self, step: int, elapsed_s: float, seconds_per_step: float) -> int:
        """As many steps as fit at this pace, at most the step limit, ending on an epoch boundary (inside the first
        epoch when not even one fits). If the pace slows inside an epoch that no longer fits, that epoch runs on
        until the budget runs out; when it has, the run ends at once: the budget is a limit."""
        remaining = self.seconds - elapsed_s
        steps = step + max(0, int(remaining / max(seconds_per_step, 1e-9)))
        if remaining > 0 and steps >= self.multiple > 1:
            steps = steps // self.multiple * self.multiple
            if steps < step:  # the pace slowed inside an epoch that no longer fits: the budget's end cuts it
                steps = -(-step // self.multiple) * self.multiple
        return max(step, 1, min(self.limit, steps))


class MetricsLog:
    """metrics.jsonl: one JSON object per line, appended and flushed as it happens."""

    def __init__(self, path: Path, resume: bool = False):
        self.path = Path(path)
        if not resume or not self.path.exists():
            self.path.write_text("")

    def write(self, record: dict):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int, resumed: Callable[[dict], bool] = lambda record: True):
        """On resume: drop what was logged after the checkpoint, since those steps run again. resumed(record):
        whether a record belongs to the part of the run that resumes (a self-training round; its steps count from
        0); the others are kept whatever their step."""
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line torn by the kill
            if record.get("step", 0) <= step or not resumed(record):
                kept.append(line + "\n")
        self.path.write_text("".join(kept), encoding="utf-8")


class NullLog(MetricsLog):
    """The metrics log of a process other than rank 0: rank 0 alone writes metrics.jsonl."""

    def __init__(self):
        pass

    def write(self, record: dict):
        pass

    def truncate_after(self, step: int, resumed: Callable[[dict], bool] = lambda record: True):
        pass


def progress_bar(description: str, state: LoopState, quiet: bool) -> Progress:
    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tok/s"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=console, disable=quiet, transient=False,
    )
    bar.add_task(description, total=state.max_steps, completed=state.step, loss="-", rate="-")
    return bar


def train(model: torch.nn.Module, batches_at: Callable[[int], list[Batch]], args: TrainArgs, plan: Plan,
          log: MetricsLog, run: RunOptions | None = None, world: World | None = None, out_dir: Path | None = None,
          identity: dict | None = None, on_validate: Callable[[int, int], dict] | None = None,
          stage_state: dict | None = None) -> dict:
    """Run the optimisation steps up to plan.max_steps; batches_at(i) is this process's micro-batches of step
    i + 1 (0-based).

    With out_dir, resumable checkpoints go to out_dir/checkpoints (every run.save_every steps / save_minutes, at
    epoch ends if the plan says so, and on SIGINT/SIGTERM); run.resume continues from the newest one, which must
    have the same `identity`. stage_state is the stage's own state (e.g. the best epoch so far), saved and
    restored with the rest. on_validate(epoch, step) is called at the end of every epoch, every args.val_every
    steps and after the last step; the figures it returns are logged. With several processes (world), every one
    runs this loop in step; rank 0 alone logs and saves, and paces a time budget for all.
    """
    run, world = run or RunOptions(), world or World()
    loop = Loop(model, args, plan, run, world, out_dir, identity, {} if stage_state is None else stage_state)
    state = loop.state
    log.truncate_after(state.step)
    meter = Meter(args.log_every)
    with StopSignals() as stop, progress_bar(plan.description, state, run.quiet or not world.is_main) as bar:
        while state.step < state.max_steps:
            batches = batches_at(state.step)
            loss = loop.step(batches)
            agreed = loop.agree(loss, sum(b.n_tokens for b in batches), stop.received)
            meter.add(agreed["loss"], agreed["tokens"])
            if record := meter.record(state, learning_rate(args, state.step, state.max_steps)):
                log.write(record)
                bar.update(bar.task_ids[0], loss=f"{record['loss']:.4f}", rate=f"{record['tokens_per_s']:,.0f}")
            bar.update(bar.task_ids[0], completed=state.step, total=state.max_steps)  # a budget may change the length
            batch = batches[0]
            if on_validate is not None and loop.validation_due(batch):
                log.write(loop.validate(on_validate, batch))
            if state.step < state.max_steps and (loop.save_due(batch, agreed["save"]) or agreed["stop"]):
                saved = loop.save()
            if agreed["stop"] and state.step < state.max_steps:
                where = f"checkpoint saved in {saved}; resume with: {resume_command()}" if out_dir else "nothing saved"
                signum = signal.Signals(agreed["stop"])
                raise Interrupted(f"stopped by {signum.name} after step {state.step:,}; {where}", exit_code=128 + signum)
    return {"steps": state.step, "tokens": state.tokens, "elapsed_s": state.elapsed_s, "skipped_steps": state.skipped,
            **meter.last}


class Meter:
    """The training loss and tokens/s of the last log_every steps, as metrics.jsonl records."""

    def __init__(self, log_every: int):
        self.log_every, self.window, self.session_tokens, self.last = log_every, [], 0, {}
        self.t0 = time.perf_counter()

    def add(self, loss: float | None, n_tokens: int):
        self.session_tokens += n_tokens
        if loss is not None:
            self.window.append(loss)

    def record(self, state: LoopState, lr: float) -> dict | None:
        """Every log_every steps and at the last: the mean loss since the last record, and the rate now in force."""
        if not self.window or (state.step % self.log_every and state.step != state.max_steps):
            return None
        rate = self.session_tokens / (time.perf_counter() - self.t0)
        self.last = {"step": state.step, "loss": sum(self.window) / len(self.window), "lr": lr, "tokens": state.tokens,
                     "tokens_per_s": rate, "elapsed_s": state.elapsed_s}
        self.window = []
        return self.last


class Loop:
    """The loop's machinery for one run: the model, AdamW, the weights' moving average, the time budget, the
    resumable checkpoints, and the loop's state."""

    def __init__(self, model, args: TrainArgs, plan: Plan, run: RunOptions, world: World, out_dir: Path | None,
                 identity: dict | None, stage_state: dict):
        self.model, self.args, self.plan, self.run, self.world = model.to(world.device).train(), args, plan, run, world
        self.out_dir, self.identity, self.stage_state = out_dir, identity or {}, stage_state
        self.optimizer = make_optimizer(model, args.lr, args.weight_decay)
        self.average = WeightAverage(model, plan.ema_decay) if plan.ema_decay else None
        self.state = LoopState(max_steps=plan.max_steps)
        if run.resume and (found := agreed_checkpoint(out_dir, world)) is not None:
            check_same_run(saved_run_args(found), self.identity, found)  # before its tensors: a clearer error
            restored = load_state(found, model, self.optimizer, asdict(self.state), self.average)
            self.state = LoopState(**restored["loop"])
            stage_state.update(restored["stage"])
            console.print(f"resuming from {found} (step {self.state.step:,} of {self.state.max_steps:,})")
        self.budget = Budget(args.max_minutes, plan.max_steps, plan.steps_per_epoch) \
            if args.max_minutes and world.is_main else None
        runner = distributed.wrap(model, world)
        self.runner = torch.compile(runner) if run.compile else runner  # saved and restored as `model`: plain names
        self.clock, self.last_save = time.perf_counter(), time.monotonic()

    def step(self, batches: list[Batch]) -> float | None:
        """One optimisation step; this process's share of its loss (None when it was skipped)."""
        state = self.state
        try:
            loss = training_step(self.runner, self.optimizer, batches,
                                 learning_rate(self.args, state.step, state.max_steps), self.args.grad_clip,
                                 self.plan.precision, self.world)
        except NonFinite as e:
            loss = self.non_finite(str(e), state.step + 1)
        state.step += 1
        if self.average is not None:
            self.average.update(state.step)
        now = time.perf_counter()
        state.elapsed_s += now - self.clock
        self.clock = now
        if self.budget is not None:
            state.max_steps = self.budget.length(state, now)
        return loss

    def agree(self, loss: float | None, n_tokens: int, stop: int | None) -> dict:
        """The step's global loss and tokens, any process's stop signal or save time, and rank 0's run length."""
        timed = bool(self.run.save_minutes) and time.monotonic() - self.last_save >= 60 * self.run.save_minutes
        agreed = {"loss": loss, "tokens": n_tokens, "stop": stop, "save": timed}
        if self.world.size > 1:
            shared = self.world.all_sum_named({"loss": loss or 0.0, "tokens": n_tokens, "stop": stop is not None,
                                               "save": timed, "length": self.state.max_steps * self.world.is_main})
            agreed = {"loss": None if loss is None else shared["loss"], "tokens": int(shared["tokens"]),
                      "stop": (stop or signal.SIGTERM) if shared["stop"] else None, "save": shared["save"] > 0}
            self.state.max_steps = int(shared["length"])
        self.state.tokens += agreed["tokens"]
        return agreed

    def non_finite(self, what: str, step: int) -> None:
        """--on-nan stop: one error naming the last good checkpoint; skip: count it, and give up when it recurs."""
        if self.run.on_nan != "skip":
            previous = latest_checkpoint(self.out_dir) if self.out_dir is not None else None
            kept = f"the last good checkpoint is {previous} (resume with --resume)" if previous else \
                "no checkpoint was saved before it"
            raise TinyLMError(f"{what} at step {step}; lower --lr (now {self.args.lr:g}) or check the data, or pass "
                              f"--on-nan skip to drop such batches; {kept}")
        self.state.skipped += 1
        console.print(f"[yellow]warning:[/] {what} at step {step}; batch skipped ({self.state.skipped} so far)")
        if self.state.skipped > max(10, self.state.max_steps // 10):
            raise TinyLMError(f"{self.state.skipped} batches skipped for non-finite values by step {step}; "
                              f"lower --lr (now {self.args.lr:g})")

    def validation_due(self, batch: Batch) -> bool:
        every = self.args.val_every and self.state.step % self.args.val_every == 0
        return batch.epoch_end or bool(every) or self.state.step == self.state.max_steps

    def validate(self, on_validate: Callable[[int, int], dict], batch: Batch) -> dict:
        """on_validate on the weights' moving average where the run keeps one; a budget may end the run inside an
        epoch, and that part-epoch is validated too."""
        part = {} if batch.epoch_end else {"epoch_fraction": batch.epoch_fraction}
        with self.average.swapped_in() if self.average is not None else nullcontext():
            figures = on_validate(batch.epoch, self.state.step)
        self.model.train()
        return {"step": self.state.step, "epoch": batch.epoch, **part, **figures}

    def save_due(self, batch: Batch, timed: bool) -> bool:
        every = self.run.save_every and self.state.step % self.run.save_every == 0
        return self.out_dir is not None and bool(every or (self.plan.save_at_epoch_end and batch.epoch_end) or timed)

    def save(self) -> Path | None:
        """A resumable checkpoint, written by rank 0; no process goes on (or exits) before it is whole."""
        if self.out_dir is None:
            return None
        folder = save_state(self.out_dir, self.model, self.optimizer, asdict(self.state), self.stage_state,
                            self.identity, self.run.keep_checkpoints, self.average) if self.world.is_main else None
        self.world.barrier()
        self.last_save = time.monotonic()
        return folder


class NonFinite(Exception):
    """A step whose loss or gradient was not finite: its update was skipped."""


def training_step(model, optimizer, batches: list[Batch], lr: float, grad_clip: float, precision: str,
                  world: World) -> float:
    """One optimisation step over this process's micro-batches at learning rate `lr`; returns its share of the
    step's loss. A non-finite loss or gradient skips the update and raises NonFinite.

    Each micro-batch's mean loss is weighted by its share of the global batch's targets, so the summed gradient is
    that of the global batch's mean loss however the batch is split (DDP then averages over processes, hence
    the factor world.size).
    """
    local = sum(b.n_targets for b in batches)
    total = world.all_sum([local])[0]
    shares = [b.n_targets / total if total else 0.0 for b in batches]
    optimizer.zero_grad(set_to_none=True)
    value = None
    for i, (batch, share) in enumerate(zip(batches, shares)):
        if batch.seed is not None:  # dropout depends on the micro-batch, not on which process computes it
            torch.manual_seed(batch.seed)
        inputs = {k: v.to(world.device, non_blocking=True) for k, v in host_inputs(batch).items()}
        accumulate = model.no_sync() if world.size > 1 and i < len(batches) - 1 else nullcontext()
        with accumulate:
            with autocast(precision, world.device):
                loss, _ = model(**inputs)
            (loss * (share * world.size)).backward()
        part = loss.detach().float() * share
        value = part if value is None else value + part
    value = value.item()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if torch.isfinite(norm):  # the same on every process: the gradients are averaged before
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        return value
    optimizer.zero_grad(set_to_none=True)
    raise NonFinite(f"the loss became {value}" if not math.isfinite(value) else f"the gradient norm became {norm.item()}")


def prepare_out_dir(out_dir: Path, run: RunOptions, world: World | None = None, unfinished: bool = False) -> MetricsLog:
    """The run folder: refused when it holds something, unless --overwrite (replace) or --resume (continue).
    unfinished: the stage knows the run in it is not done, though no checkpoint is left (between the rounds of
    self-training).

    With several processes, rank 0 prepares it (and logs) while the others wait.
    """
    if world is not None and world.size > 1:
        if not world.is_main:
            world.barrier()
            return NullLog()
        log = prepare_out_dir(out_dir, run, unfinished=unfinished)
        world.barrier()
        return log
    out_dir = Path(out_dir)
    check_out_dir(out_dir, run.overwrite or run.resume, flag="--out ")
    if run.overwrite:
        remove_checkpoints(out_dir)  # an old run's checkpoints must not be resumed
        # nor its self-training rounds carried into the new model folder (save_checkpoint carries run files over)
        (out_dir / SELF_TRAINING_FILE).unlink(missing_ok=True)
    if run.resume and latest_checkpoint(out_dir) is None and not unfinished:
        if (out_dir / WEIGHTS_FILE).is_file():
            raise TinyLMError(f"--resume: {out_dir} has no checkpoint to resume from (the run finished, or stopped "
                              "before its first checkpoint); use --overwrite to train again")
        console.print(f"note: no checkpoint in {out_dir} yet; starting from the beginning")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return MetricsLog(out_dir / METRICS_FILE, resume=run.resume)
    except OSError as e:
        raise TinyLMError(f"cannot write to --out {out_dir}: {e.strerror}") from None


def batch_identity(cfg: StageConfig, world: World) -> dict:
    """The training settings a resume must share: those of the stage's config, with the global batch in place of
    how it is cut (batch size, accumulation, processes), which may change between the two parts of a run."""
    settings = {k: v for k, v in cfg.flat().items() if k not in ("batch_size", "grad_accum")}
    return {**settings, "global_batch": global_batch(cfg.train, world)}


def global_batch(args: TrainArgs, world: World) -> int:
    return args.batch_size * args.grad_accum * world.size


def describe_batch(args: TrainArgs, world: World, what: str) -> str:
    """'batches of 64 sequences' and, when it is cut, how: '(16 x 2 accumulated x 2 processes)'."""
    parts = [f"{args.batch_size}"] + ([f"{args.grad_accum} accumulated"] if args.grad_accum > 1 else []) + \
        ([f"{world.size} processes"] if world.size > 1 else [])
    return f"batches of {global_batch(args, world)} {what}" + (f" ({' x '.join(parts)})" if len(parts) > 1 else "")


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

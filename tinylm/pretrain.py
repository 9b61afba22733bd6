"""Masked-language-model pretraining: text corpus + tokenizer -> base checkpoint (kind "mlm")."""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from tinylm.checkpoint import METRICS_FILE, RUN_CONFIG, WEIGHTS_FILE, check_out_dir, save_checkpoint
from tinylm.config import BertConfig, PretrainConfig, RunOptions, check_positive, to_toml
from tinylm.data import PackedRows
from tinylm.errors import TinyLMError
from tinylm.masking import mask_rows
from tinylm.model import BertForMaskedLM
from tinylm.pii import PLACEHOLDERS
from tinylm.provenance import build_manifest, file_records, now, parent_record, scrub_record, scrubbed_kinds
from tinylm.shards import corpus_key, encode_corpus
from tinylm.state import checkpoint_root, latest_checkpoint
from tinylm.tokenizer import CLS, PAD, SPECIAL_TOKENS, TOKENIZER_FILE, load_tokenizer
from tinylm.train import Batch, LoopConfig, MetricsLog, console, resolve_device, resolve_precision, train


BUDGET_LIMIT = 10**9  # steps, when only a time budget bounds the run


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one step's masking: a function of (seed, step) only, so a resumed run draws the same masks."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0] >> 1))


class MLMBatches:
    """The batch of step i, as a pure function of (seed, i): a fresh permutation of the rows each epoch, and a
    fresh 15% mask each step (dynamic masking). A resumed run jumps to its step; nothing is replayed."""

    def __init__(self, rows: PackedRows, batch_size: int, seed: int, ids: dict[str, int], vocab_size: int,
                 mlm_probability: float):
        self.rows, self.batch_size, self.seed, self.ids = rows, batch_size, seed, ids
        self.vocab_size, self.mlm_probability = vocab_size, mlm_probability
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}  # at most two alive
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
        return self._orders[epoch]

    def __call__(self, step: int) -> Batch:
        position = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, offsets = np.divmod(position, len(self.rows))
        indices = np.concatenate([self.order(e)[offsets[epochs == e]] for e in np.unique(epochs)])
        inputs, attention_mask, labels = mask_rows(torch.from_numpy(self.rows.take(indices)), self.ids,
                                                   self.vocab_size, self.mlm_probability,
                                                   step_generator(self.seed, step))
        return Batch({"input_ids": inputs, "attention_mask": attention_mask, "labels": labels},
                     n_tokens=int(attention_mask.sum()), epoch=int(epochs[0]) + 1)


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


def prepare_out_dir(out_dir: Path, run: RunOptions) -> MetricsLog:
    """The run folder: refused when it holds something, unless --overwrite (replace) or --resume (continue)."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, run.overwrite or run.resume, flag="--out ")
    if run.overwrite:
        shutil.rmtree(checkpoint_root(out_dir), ignore_errors=True)  # an old run's checkpoints must not be resumed
    if run.resume and latest_checkpoint(out_dir) is None:
        if (out_dir / WEIGHTS_FILE).is_file():
            raise TinyLMError(f"--resume: {out_dir} has no checkpoint to resume from (the run finished, or stopped "
                              "before its first checkpoint); use --overwrite to train again")
        console.print(f"note: no checkpoint in {out_dir} yet; starting from the beginning")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return MetricsLog(out_dir / METRICS_FILE, resume=run.resume)
    except OSError as e:
        raise TinyLMError(f"cannot write to --out {out_dir}: {e.strerror}") from None


def loop_config(cfg, run: RunOptions, max_steps: int, precision: str, description: str) -> LoopConfig:
    return LoopConfig(max_steps=max_steps, lr=cfg.lr, warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
                      grad_clip=cfg.grad_clip, log_every=cfg.log_every, precision=precision,
                      description=description, quiet=run.quiet, save_every=run.save_every,
                      save_minutes=run.save_minutes, keep_checkpoints=run.keep_checkpoints, on_nan=run.on_nan,
                      compile=run.compile, max_minutes=cfg.max_minutes)


def pretrain(data: list[Path], tokenizer_dir: Path, out_dir: Path, model_config: BertConfig, cfg: PretrainConfig,
             run: RunOptions | None = None) -> dict:
    """Pretrain BertForMaskedLM on `data` and write a base checkpoint to out_dir. Returns the run summary.

    run.scrub_kinds: PII kinds to replace before training; a tokenizer trained with scrubbing passes it on anyway.
    """
    run = (run or RunOptions()).check()
    started = now()
    check_positive(cfg, ("max_steps", "epochs", "max_minutes", "batch_size", "lr", "seq_len", "log_every"))
    if not 0 < cfg.mlm_probability < 1:
        raise TinyLMError(f"mlm_probability must be in (0, 1), got {cfg.mlm_probability}")
    tokenizer = load_tokenizer(tokenizer_dir)
    scrub_kinds = resolve_scrub(run.scrub_kinds, tokenizer_dir, tokenizer)
    model_config.vocab_size = tokenizer.get_vocab_size()
    model_config.pad_token_id = tokenizer.token_to_id(PAD)
    model_config.validate()
    if cfg.seq_len > model_config.max_position_embeddings:
        raise TinyLMError(f"--seq-len {cfg.seq_len} exceeds the model's max_position_embeddings "
                          f"{model_config.max_position_embeddings}")
    if cfg.seq_len < 2:
        raise TinyLMError(f"--seq-len must be at least 2 ([CLS] and one token), got {cfg.seq_len}")
    log = prepare_out_dir(out_dir, run)
    dev = resolve_device(run.device)
    precision = resolve_precision(run.precision, dev)

    inputs, hashing_s = file_records(data)
    key = corpus_key(inputs, Path(tokenizer_dir) / TOKENIZER_FILE, cfg.text_column, run.encoding, scrub_kinds)
    shards = encode_corpus(data, tokenizer, key, run.cache_dir, cfg.text_column, run.encoding, scrub_kinds,
                           run.quiet, console)
    rows = PackedRows(shards.tokens, cfg.seq_len, tokenizer.token_to_id(CLS), tokenizer.token_to_id(PAD))
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    if cfg.max_steps is None:  # from --epochs; with only --max-minutes, the budget alone decides
        cfg.max_steps = BUDGET_LIMIT if cfg.max_minutes and not cfg.epochs else \
            max(1, math.ceil((cfg.epochs or 1) * steps_per_epoch))
    length = f"{cfg.max_minutes:g} minutes" if cfg.max_steps == BUDGET_LIMIT else \
        f"{cfg.max_steps:,} steps ({cfg.max_steps / steps_per_epoch:.2f} epochs)" + \
        (f" or {cfg.max_minutes:g} minutes" if cfg.max_minutes else "")
    console.print(f"pretraining on {shards.meta['n_documents']:,} documents = {len(rows):,} rows of {cfg.seq_len} "
                  f"tokens; {length} of batches of {cfg.batch_size}, {precision} on {dev.type}")

    (Path(out_dir) / RUN_CONFIG).write_text(to_toml({"model": model_config, "train": cfg}), encoding="utf-8")
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(model_config)
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    batches = MLMBatches(rows, cfg.batch_size, cfg.seed, ids, model_config.vocab_size, cfg.mlm_probability)
    args = {"stage": "pretrain", "command": run.command, "data": [str(p) for p in data],
            "tokenizer": str(tokenizer_dir), "precision": precision, "train": asdict(cfg),
            "scrub_pii": list(scrub_kinds or [])}
    identity = {"inputs": [r["sha256"] for r in inputs], "tokens": key, "model": asdict(model_config),
                "train": asdict(cfg), "precision": precision}
    summary = train(model, batches, loop_config(cfg, run, cfg.max_steps, precision, "pretrain"), log, dev,
                    out_dir=Path(out_dir), run_args=identity, resume=run.resume)
    args["summary"] = summary
    manifest = build_manifest("mlm", inputs, [parent_record(tokenizer_dir, "tokenizer")],
                              {**args, "model": asdict(model_config)}, run.command, started, run.record_host,
                              scrub_record(scrub_kinds, shards.meta.get("scrub_counts")), hashing_s)
    save_checkpoint(out_dir, model, tokenizer, args, provenance=manifest)
    shutil.rmtree(checkpoint_root(out_dir), ignore_errors=True)  # the run is complete: its model is the hand-off
    return summary

"""Masked-language-model pretraining: text corpus + tokenizer -> base checkpoint (kind "mlm")."""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from tinylm.checkpoint import METRICS_FILE, check_out_dir, save_checkpoint
from tinylm.config import BertConfig, PretrainConfig, check_positive
from tinylm.data import pack_documents, read_texts
from tinylm.errors import TinyLMError
from tinylm.masking import mask_tokens
from tinylm.pii import PLACEHOLDERS, scrub_all
from tinylm.provenance import build_manifest, file_records, now, parent_record, scrub_record, scrubbed_kinds
from tinylm.tokenizer import CLS, MASK, PAD, SEP, SPECIAL_TOKENS, load_tokenizer
from tinylm.train import Batch, LoopConfig, MetricsLog, console, resolve_device, resolve_precision, train
from tinylm.model import BertForMaskedLM


def mlm_batches(rows: np.ndarray, cfg: PretrainConfig, ids: dict[str, int], vocab_size: int) -> Iterator[Batch]:
    """Endless epochs of shuffled packed rows, each batch freshly masked (dynamic masking)."""
    order_rng = np.random.default_rng(cfg.seed)
    mask_rng = torch.Generator().manual_seed(cfg.seed)
    # Random replacements start after the last special token: 5 for our tokenizers, 104 for an imported BERT
    # vocabulary ([PAD]=0, [unused*], [UNK]=100 ... [MASK]=103), whose specials are not at 0..4.
    first_regular_id = max(ids.values()) + 1
    while True:
        order = order_rng.permutation(len(rows))
        for start in range(0, len(order), cfg.batch_size):
            input_ids = torch.from_numpy(rows[order[start:start + cfg.batch_size]])
            attention_mask = (input_ids != ids[PAD]).long()
            special = (input_ids == ids[PAD]) | (input_ids == ids[CLS]) | (input_ids == ids[SEP])
            inputs, labels = mask_tokens(input_ids, special, ids[MASK], vocab_size, cfg.mlm_probability,
                                         mask_rng, first_regular_id=first_regular_id)
            yield Batch({"input_ids": inputs, "attention_mask": attention_mask, "labels": labels},
                        n_tokens=int(attention_mask.sum()), epoch_end=start + cfg.batch_size >= len(order))


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


def prepare_out_dir(out_dir: Path, overwrite: bool) -> MetricsLog:
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite, flag="--out ")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return MetricsLog(out_dir / METRICS_FILE)
    except OSError as e:
        raise TinyLMError(f"cannot write to --out {out_dir}: {e.strerror}") from None


def pretrain(data: list[Path], tokenizer_dir: Path, out_dir: Path, model_config: BertConfig, cfg: PretrainConfig,
             precision: str = "auto", device: str = "auto", overwrite: bool = False, quiet: bool = False,
             encoding: str = "utf-8", command: str = "", scrub_kinds: tuple[str, ...] | None = None,
             record_host: bool = False) -> dict:
    """Pretrain BertForMaskedLM on `data` and write a base checkpoint to out_dir. Returns the run summary.

    scrub_kinds: PII kinds to replace before training; a tokenizer trained with scrubbing passes it on anyway.
    """
    started = now()
    check_positive(cfg, ("max_steps", "epochs", "batch_size", "lr", "seq_len", "log_every"))
    if not 0 < cfg.mlm_probability < 1:
        raise TinyLMError(f"mlm_probability must be in (0, 1), got {cfg.mlm_probability}")
    tokenizer = load_tokenizer(tokenizer_dir)
    scrub_kinds = resolve_scrub(scrub_kinds, tokenizer_dir, tokenizer)
    model_config.vocab_size = tokenizer.get_vocab_size()
    model_config.pad_token_id = tokenizer.token_to_id(PAD)
    model_config.validate()
    if cfg.seq_len > model_config.max_position_embeddings:
        raise TinyLMError(f"--seq-len {cfg.seq_len} exceeds the model's max_position_embeddings "
                          f"{model_config.max_position_embeddings}")
    log = prepare_out_dir(out_dir, overwrite)
    dev = resolve_device(device)
    resolved_precision = resolve_precision(precision, dev)

    texts = read_texts(data, cfg.text_column, encoding)
    inputs, hashing_s = file_records(data)
    texts, scrub_counts = scrub_all(texts, scrub_kinds) if scrub_kinds else (texts, None)
    rows = pack_documents(tokenizer, texts, cfg.seq_len)
    steps_per_epoch = math.ceil(len(rows) / cfg.batch_size)
    if cfg.max_steps is None:
        cfg.max_steps = max(1, math.ceil((cfg.epochs or 1) * steps_per_epoch))
    console.print(f"pretraining on {len(texts):,} documents = {len(rows):,} rows of {cfg.seq_len} tokens; "
                  f"{cfg.max_steps:,} steps of {cfg.batch_size} ({cfg.max_steps / steps_per_epoch:.2f} epochs), "
                  f"{resolved_precision} on {dev.type}")

    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(model_config)
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    loop = LoopConfig(max_steps=cfg.max_steps, lr=cfg.lr, warmup_ratio=cfg.warmup_ratio,
                      weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip, log_every=cfg.log_every,
                      precision=resolved_precision, description="pretrain", quiet=quiet)
    summary = train(model, mlm_batches(rows, cfg, ids, model_config.vocab_size), loop, log, dev)
    args = {"stage": "pretrain", "command": command, "data": [str(p) for p in data], "tokenizer": str(tokenizer_dir),
            "precision": resolved_precision, "train": asdict(cfg), "scrub_pii": list(scrub_kinds or []),
            "summary": summary}
    manifest = build_manifest("mlm", inputs, [parent_record(tokenizer_dir, "tokenizer")],
                              {**args, "model": asdict(model_config)}, command, started, record_host,
                              scrub_record(scrub_kinds, scrub_counts), hashing_s)
    save_checkpoint(out_dir, model, tokenizer, args, provenance=manifest)
    return summary

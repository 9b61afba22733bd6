"""Masked-language-model pretraining: text corpus + tokenizer -> base checkpoint (kind "mlm")."""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from tinylm import distributed
from tinylm.checkpoint import load_checkpoint, read_config, save_checkpoint
from tinylm.config import BertConfig, EmbeddingInit, PretrainConfig, RunOptions, check_same_size, to_toml
from tinylm.data import PackedRows, RowSelection, hold_out
from tinylm.devices import console, resolve_precision
from tinylm.distributed import Layout, World
from tinylm.errors import TinyLMError
from tinylm.files import RUN_CONFIG, TOKENIZER_FILE
from tinylm.evaluate import masked_lm_metrics
from tinylm.masking import MaskDraws, first_regular_id, mask_rows
from tinylm.model import BertForMaskedLM
from tinylm.provenance import build_manifest, file_records, now, parent_record, resolve_scrub, scrub_record
from tinylm.shards import corpus_key, encode_corpus
from tinylm.state import remove_checkpoints
from tinylm.tokenizer import CLS, PAD, SEP, load_tokenizer, special_ids
from tinylm.train import (Batch, Plan, batch_identity, derived_seed, describe_batch, global_batch, prepare_out_dir,
                          train)


BUDGET_LIMIT = 10**9  # steps, when only a time budget bounds the run
ROW_LENGTHS = (32, 64, 128)  # the row lengths --seq-len is fitted from
ROW_TOKENS = 4096  # tokens in a batch when --batch-size is not given: 32 rows of 128, 128 rows of 32
SAMPLE_TOKENS = 50_000_000  # the corpus statistics (unigram prior, row length) read at most this many tokens
COOCCURRENCE_TOKENS = 5_000_000  # the word vectors read at most this many tokens (seconds; the frequent words)
COOCCURRENCE_WINDOW = 4  # tokens either side
COOCCURRENCE_RANK = 128  # at most: the SVD's cost grows with it, and wider embeddings get a rotation of these
HELD_OUT_ROWS = 256  # at most: enough for a steady loss (~10k predictions), a second or so to score on a CPU


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one step's masking: a function of (seed, step) only, so a resumed run draws the same masks."""
    return torch.Generator().manual_seed(derived_seed(seed, step))


class MLMBatches:
    """This process's micro-batches of step i, as a pure function of (seed, i): the global batch of step i is
    rows i*G ... (i+1)*G-1 of an endless run of epochs, each a fresh permutation of the rows, masked afresh each
    step (dynamic masking). A resumed run jumps to its step; nothing is replayed.

    The global batch (G = batch_size x micro-batches of the layout) is cut into micro-batches of batch_size; this
    process reads and masks only its own. A row's mask depends on the seed, the step and the row's place in the
    global batch, never on how many processes or accumulation steps share it.
    """

    def __init__(self, rows: PackedRows | RowSelection, batch_size: int, seed: int, ids: dict[str, int],
                 vocab_size: int, mlm_probability: float, layout: Layout = Layout()):
        self.rows, self.batch_size, self.seed, self.ids = rows, batch_size, seed, ids
        self.vocab_size, self.mlm_probability, self.layout = vocab_size, mlm_probability, layout
        self.global_batch = batch_size * layout.micro_batches
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}  # at most two alive
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
        return self._orders[epoch]

    def __call__(self, step: int) -> list[Batch]:
        draws = MaskDraws.draw((self.global_batch, self.rows.seq_len), self.vocab_size, first_regular_id(self.ids),
                               step_generator(self.seed, step))
        return [self.micro_batch(step, chunk, draws) for chunk in self.layout.chunks]

    def micro_batch(self, step: int, chunk: int, draws: MaskDraws) -> Batch:
        start = chunk * self.batch_size  # within the global batch
        position = step * self.global_batch + start + np.arange(self.batch_size)
        epochs, offsets = np.divmod(position, len(self.rows))
        indices = np.concatenate([self.order(e)[offsets[epochs == e]] for e in np.unique(epochs)])
        inputs, attention_mask, labels = mask_rows(torch.from_numpy(self.rows.take(indices)), self.ids,
                                                   self.vocab_size, self.mlm_probability,
                                                   draws=draws.rows(start, start + self.batch_size))
        return Batch({"input_ids": inputs, "attention_mask": attention_mask, "labels": labels},
                     n_tokens=int(attention_mask.sum()), n_targets=int((labels != -100).sum()),
                     epoch=int(epochs[0]) + 1, epoch_fraction=float((offsets[-1] + 1) / len(self.rows)),
                     seed=derived_seed(self.seed, step, chunk, 1), rows=indices)


def sampled_chunks(tokens: np.ndarray, sample: int):
    """(offset, piece) of the first `sample` tokens, 4M tokens (a few MB) at a time: corpus statistics read the
    memory-mapped stream without an in-memory copy of it."""
    chunk = 1 << 22
    for start in range(0, min(len(tokens), sample), chunk):
        yield start, tokens[start:min(start + chunk, sample)]


def unigram_log_prior(tokens: np.ndarray, vocab_size: int, never_predicted: list[int],
                      sample: int = SAMPLE_TOKENS) -> torch.Tensor:
    """log P(token) in the corpus (add-half smoothed, from its first `sample` tokens), centred.

    The MLM decoder's bias starts here (as one initialises any classifier's bias to the log prior), so the loss
    starts at the corpus's unigram entropy instead of ln V and the first few hundred steps are not spent learning
    word frequencies. Special tokens, never a target, get the floor."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for _, piece in sampled_chunks(tokens, sample):
        counts += np.bincount(piece, minlength=vocab_size)[:vocab_size]
    counts[never_predicted] = 0
    log_p = np.log((counts + 0.5) / (counts + 0.5).sum())
    return torch.from_numpy(log_p - log_p.mean()).float()


def cooccurrence_embeddings(tokens: np.ndarray, initial: torch.Tensor, specials: list[int],
                            window: int = COOCCURRENCE_WINDOW, sample: int = COOCCURRENCE_TOKENS) -> torch.Tensor:
    """Word embeddings from the corpus's co-occurrence counts: the positive pointwise mutual information of tokens
    within `window` of each other (weighted 1/distance, contexts smoothed to the power 0.75), reduced to the
    embedding width by a truncated SVD (Levy, Goldberg & Dagan, 2015).

    Seconds of counting give every token a vector that places it near the tokens used like it ("dull" beside
    "boring" and "pretentious"), the knowledge that fifteen minutes of MLM only begins to learn. Rows of the
    `specials` (not counted: [SEP] and [CLS] sit between documents) and of tokens absent from the sample keep
    `initial`; the others are scaled to its standard deviation, the scale the embedding LayerNorm and the tied
    decoder are initialised for."""
    vocab_size, dim = initial.shape
    pairs, weights = [], []
    for _, piece in sampled_chunks(tokens, sample):
        piece = piece.astype(np.int64)
        for distance in range(1, window + 1):
            left, right = piece[:-distance], piece[distance:]
            keys, counts = np.unique(np.concatenate([left * vocab_size + right, right * vocab_size + left]),
                                     return_counts=True)
            pairs.append(keys)
            weights.append(counts / distance)
    if not pairs:
        return initial
    keys, index = np.unique(np.concatenate(pairs), return_inverse=True)
    counts = np.bincount(index, weights=np.concatenate(weights))
    rows, cols = keys // vocab_size, keys % vocab_size
    keep = ~(np.isin(rows, specials) | np.isin(cols, specials))
    rows, cols, counts = rows[keep], cols[keep], counts[keep]
    word = np.bincount(rows, weights=counts, minlength=vocab_size)
    context = np.bincount(cols, weights=counts, minlength=vocab_size) ** 0.75
    pmi = np.log(counts / (word[rows] * context[cols] / context.sum()))
    positive = pmi > 0
    if not positive.any():
        return initial
    ppmi = torch.sparse_coo_tensor(np.stack([rows[positive], cols[positive]]), pmi[positive].astype(np.float32),
                                   (vocab_size, vocab_size), check_invariants=True).coalesce()
    rank = min(dim, vocab_size, COOCCURRENCE_RANK)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # summed in one order: the same vectors on every process, whatever its thread count
    try:
        u, s, _ = torch.svd_lowrank(ppmi, q=rank, niter=4)
        vectors = u * s.sqrt()
        if rank < dim:  # a random rotation into the embedding width keeps every inner product
            vectors = vectors @ torch.linalg.qr(torch.randn(dim, rank)).Q.T
    finally:
        torch.set_num_threads(threads)
    seen = torch.from_numpy(word > 0)
    vectors = vectors[seen] - vectors[seen].mean(0)
    embeddings = initial.clone()
    embeddings[seen] = vectors * (initial.std() / vectors.std().clamp(min=1e-12))
    return embeddings


def fitted_seq_len(tokens: np.ndarray, sep_id: int, longest: int, sample: int = SAMPLE_TOKENS) -> int:
    """The shortest row of ROW_LENGTHS that holds 95% of the documents whole ([CLS], its tokens, [SEP]), at most
    `longest` (from the first `sample` tokens).

    Rows are packed across documents, so a row much longer than the documents mostly attends to unrelated
    neighbours and trains positions that fine-tuning on those documents never uses, at attention's quadratic cost.
    With short documents (questions, phrases) shorter rows learn faster per second at no cost to the classifier
    (docs/pretraining.md)."""
    ends = [start + np.flatnonzero(piece == sep_id) for start, piece in sampled_chunks(tokens, sample)]
    ends = np.concatenate(ends) if ends else np.empty(0, dtype=np.int64)
    if not len(ends):
        return min(ROW_LENGTHS[-1], longest)
    need = np.percentile(np.diff(ends, prepend=-1) + 1, 95)  # a document's tokens and [SEP], and the row's [CLS]
    return min(next((n for n in ROW_LENGTHS if n >= need), ROW_LENGTHS[-1]), longest)


def held_out_validation(model, rows: RowSelection, ids: dict[str, int], vocab_size: int, cfg: PretrainConfig,
                        world: World):
    """on_validate for train(): the MLM loss and masked-token accuracy on the held-out rows, always masked the same
    way (from the run's seed), so that the figures of one run compare from step to step. Rank 0 scores; all learn it."""
    input_ids = torch.from_numpy(rows.take(np.arange(len(rows))))

    def validate(epoch: int, step: int) -> dict:
        figures = [0.0, 0.0, 0]
        if world.is_main and (metrics := masked_lm_metrics(model, input_ids, ids, vocab_size, cfg.mlm_probability,
                                                           cfg.train.seed, device=world.device)):
            figures = [metrics["cross_entropy"], metrics["accuracy"], metrics["n_tokens"]]
        loss, accuracy, n_tokens = world.all_sum(figures)
        validate.last = {"val_loss": loss, "val_masked_accuracy": accuracy} if n_tokens else {}  # none masked: none
        return validate.last

    validate.last = {}
    return validate


def pretrain(data: list[Path], tokenizer_dir: Path | None, out_dir: Path, model_config: BertConfig,
             cfg: PretrainConfig, run: RunOptions | None = None, init: Path | None = None) -> dict:
    """Pretrain BertForMaskedLM on `data` and write a base checkpoint to out_dir. Returns the run summary.

    init: continue pretraining a base checkpoint (tinylm's, or an imported transformers BERT) instead of a fresh
    model: its weights and tokenizer (tokenizer_dir, if given, must hold the same one), a fresh optimizer and
    schedule; model_config must have the base's size (config.resolve_pretrain(..., base=base_config(init))).
    run.scrub_kinds: PII kinds to replace before training; a tokenizer trained with scrubbing passes it on anyway.
    Under torchrun, every process runs this with the same arguments (see tinylm.distributed).
    """
    run = run or RunOptions()
    if tokenizer_dir is None and init is None:
        raise TinyLMError("pretraining needs --tokenizer (from `tinylm tokenize`), or --init with a base checkpoint")
    with distributed.session(run.device) as world:
        return _pretrain(data, tokenizer_dir, out_dir, model_config, cfg, run, world, init)


def _pretrain(data: list[Path], tokenizer_dir: Path | None, out_dir: Path, model_config: BertConfig,
              cfg: PretrainConfig, run: RunOptions, world: World, init: Path | None) -> dict:
    started = now()
    if init is not None:
        base, tokenizer = load_base(init, tokenizer_dir)
        tokenizer_dir = Path(init)  # the tokenizer, and any scrubbing it was trained with, are the base's
    else:
        base, tokenizer = None, load_tokenizer(tokenizer_dir)
    model_config = replace(model_config, vocab_size=tokenizer.get_vocab_size(),
                           pad_token_id=tokenizer.token_to_id(PAD)).validate()
    if base is not None:
        check_same_size(model_config, base.config, "model config", str(init))
    scrub_kinds = resolve_scrub(run.scrub_kinds, tokenizer_dir, tokenizer)
    check_seq_len(cfg.train.seq_len, model_config)
    log = prepare_out_dir(out_dir, run, world)
    precision = resolve_precision(run.precision, world.device)
    inputs, hashing_s = file_records(data)
    key = corpus_key(inputs, Path(tokenizer_dir) / TOKENIZER_FILE, cfg.train.text_column, run.encoding, scrub_kinds)
    with world.local_main_first():  # encoded once per machine; the others read the cache
        shards = encode_corpus(data, tokenizer, key, run.cache_dir, cfg.train.text_column, run.encoding, scrub_kinds,
                               run.quiet, console)
    cfg, rows, held_out = resolve_rows(cfg, shards, tokenizer, model_config, world, precision)
    if world.is_main:
        (Path(out_dir) / RUN_CONFIG).write_text(to_toml({"model": model_config, "train": cfg}), encoding="utf-8")
    ids = special_ids(tokenizer)
    model = initial_model(model_config, cfg, shards.tokens, list(ids.values())) if base is None else \
        continued_model(model_config, base, cfg.train.seed)
    del base
    parent = parent_record(init, "base") if init is not None else parent_record(tokenizer_dir, "tokenizer")
    batches = MLMBatches(rows, cfg.train.batch_size, cfg.train.seed, ids, model_config.vocab_size,
                         cfg.mlm_probability, world.layout(cfg.train.grad_accum))
    args = {"stage": "pretrain", "command": run.command, "data": [str(p) for p in data],
            "tokenizer": str(tokenizer_dir), "precision": precision, "train": cfg.flat(),
            "processes": world.size, "scrub_pii": list(scrub_kinds or [])}
    identity = {"inputs": [r["sha256"] for r in inputs], "tokens": key, "model": asdict(model_config),
                "train": batch_identity(cfg, world), "precision": precision}
    if init is not None:  # a resume continues this run from its own checkpoint, and only from the same base
        args["base"] = str(init)
        identity["base"] = parent["sha256"]
    validate = held_out_validation(model, held_out, ids, model_config.vocab_size, cfg, world) if len(held_out) else None
    summary = train(model, batches, cfg.train, Plan(cfg.max_steps, precision, "pretrain"), log, run, world,
                    Path(out_dir), identity, on_validate=validate)
    if validate is not None:
        summary.update(validate.last)
    args["summary"] = summary
    if world.is_main:
        manifest = build_manifest("mlm", inputs, [parent],
                                  {**args, "model": asdict(model_config)}, run.command, started, run.record_host,
                                  scrub_record(scrub_kinds, shards.meta.get("scrub_counts")), hashing_s)
        save_checkpoint(out_dir, model, tokenizer, args, provenance=manifest)
        remove_checkpoints(out_dir)  # the run is complete: its model is the hand-off
    return summary


def base_config(init: Path) -> BertConfig:
    """The model config of the base that --init names, or one line saying why it cannot be continued."""
    init = Path(init)
    if not init.is_dir():
        raise TinyLMError(f"--init {init} does not exist; give a base checkpoint folder (from `tinylm pretrain` or "
                          "`tinylm import`)")
    config, meta = read_config(init)
    if meta["kind"] != "mlm":
        raise TinyLMError(f"--init {init} is a classifier checkpoint; continued pretraining starts from a base (MLM) "
                          "checkpoint, from `tinylm pretrain` or `tinylm import`")
    return config


def load_base(init: Path, tokenizer_dir: Path | None):
    """(model, tokenizer) of the base to continue. A --tokenizer other than the base's is refused: the base's
    embeddings are rows of its own vocabulary."""
    base_config(init)
    model, tokenizer, _ = load_checkpoint(init, expect_kind="mlm")
    if tokenizer_dir is not None and load_tokenizer(tokenizer_dir).to_str() != tokenizer.to_str():
        raise TinyLMError(f"--tokenizer {tokenizer_dir} is not the tokenizer of the base {init}; continued "
                          "pretraining keeps the base's tokenizer, whose vocabulary its embeddings belong to: "
                          "drop --tokenizer")
    return model, tokenizer


def continued_model(model_config: BertConfig, base: BertForMaskedLM, seed: int) -> BertForMaskedLM:
    """The base's weights, every one of them (the decoder bias and embeddings too: the unigram prior and the
    co-occurrence vectors are for a fresh model), in a model with this run's config (pretraining's dropout).
    A resumed run loads its own weights over these."""
    torch.manual_seed(seed)
    model = BertForMaskedLM(model_config)
    model.load_state_dict(base.state_dict())
    model.tie_weights()
    return model


def check_seq_len(seq_len: int | None, model_config: BertConfig):
    if seq_len is not None and seq_len > model_config.max_position_embeddings:
        raise TinyLMError(f"--seq-len {seq_len} exceeds the model's max_position_embeddings "
                          f"{model_config.max_position_embeddings}")


def resolve_rows(cfg: PretrainConfig, shards, tokenizer, model_config: BertConfig, world: World,
                 precision: str) -> tuple[PretrainConfig, RowSelection, RowSelection]:
    """The corpus packed into rows (the row length fitted to its documents unless given), the rows held out, and
    the config with what was left open resolved: seq_len, batch_size, max_steps. Says what the run will do."""
    args = cfg.train
    fitted = args.seq_len is None
    if fitted:
        args = replace(args, seq_len=fitted_seq_len(shards.tokens, tokenizer.token_to_id(SEP),
                                                     model_config.max_position_embeddings))
    if args.batch_size is None:
        args = replace(args, batch_size=max(1, ROW_TOKENS // args.seq_len))
    packed = PackedRows(shards.tokens, args.seq_len, tokenizer.token_to_id(CLS), tokenizer.token_to_id(PAD))
    rows, held_out = hold_out(packed, cfg.val_fraction, args.seed, HELD_OUT_ROWS)
    steps_per_epoch = math.ceil(len(rows) / global_batch(args, world))
    max_steps = cfg.max_steps
    if max_steps is None:  # from --epochs; with only --max-minutes, the budget alone decides
        max_steps = BUDGET_LIMIT if args.max_minutes and not cfg.epochs else \
            max(1, math.ceil((cfg.epochs or 1) * steps_per_epoch))
    cfg = replace(cfg, train=args, max_steps=max_steps)
    length = f"{args.max_minutes:g} minutes" if max_steps == BUDGET_LIMIT else \
        f"{max_steps:,} steps ({max_steps / steps_per_epoch:.2f} epochs)" + \
        (f" or {args.max_minutes:g} minutes" if args.max_minutes else "")
    held = f" ({len(held_out):,} held out to measure the MLM loss on unseen text)" if len(held_out) else \
        " (too few to hold some out for a held-out loss)" if cfg.val_fraction else ""
    fit = " (95% of the documents fit whole)" if fitted else ""
    console.print(f"pretraining on {shards.meta['n_documents']:,} documents = {len(packed):,} rows of {args.seq_len} "
                  f"tokens{fit}{held}; {length} of {describe_batch(args, world, 'rows')}, {precision} on "
                  f"{world.device.type}")
    return cfg, rows, held_out


def initial_model(model_config: BertConfig, cfg: PretrainConfig, tokens: np.ndarray, specials: list[int]):
    """BERT's initialisation, with the decoder's bias at the corpus's unigram log prior and, by default, the word
    embeddings from its co-occurrence counts. A resumed run loads its own weights over these."""
    torch.manual_seed(cfg.train.seed)
    model = BertForMaskedLM(model_config)
    with torch.no_grad():
        model.cls.predictions.bias.copy_(unigram_log_prior(tokens, model_config.vocab_size, specials))
        if cfg.embedding_init == EmbeddingInit.cooccurrence:
            embeddings = model.bert.embeddings.word_embeddings.weight
            embeddings.copy_(cooccurrence_embeddings(tokens, embeddings, specials))
    return model

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
from tinylm import distributed
from tinylm.data import PackedRows, RowSelection, hold_out
from tinylm.distributed import Layout, World
from tinylm.errors import TinyLMError
from tinylm.evaluate import masked_lm_metrics
from tinylm.masking import MaskDraws, first_regular_id, mask_rows
from tinylm.model import BertForMaskedLM
from tinylm.pii import PLACEHOLDERS
from tinylm.provenance import build_manifest, file_records, now, parent_record, scrub_record, scrubbed_kinds
from tinylm.shards import corpus_key, encode_corpus
from tinylm.state import checkpoint_root, latest_checkpoint
from tinylm.tokenizer import CLS, PAD, SEP, SPECIAL_TOKENS, TOKENIZER_FILE, load_tokenizer
from tinylm.train import Batch, LoopConfig, MetricsLog, NullLog, console, derived_seed, resolve_precision, train


BUDGET_LIMIT = 10**9  # steps, when only a time budget bounds the run
ROW_LENGTHS = (32, 64, 128)  # the row lengths --seq-len is fitted from
ROW_TOKENS = 4096  # tokens in a batch when --batch-size is not given: 32 rows of 128, 128 rows of 32
SAMPLE_TOKENS = 50_000_000  # the corpus statistics (unigram prior, row length) read at most this many tokens
COOCCURRENCE_TOKENS = 5_000_000  # the word vectors read at most this many tokens (seconds; the frequent words)
COOCCURRENCE_WINDOW = 4  # tokens either side
COOCCURRENCE_RANK = 128  # at most: the SVD's cost grows with it, and wider embeddings get a rotation of these
EMBEDDING_INITS = ("cooccurrence", "random")
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
    With short documents (questions, phrases) shorter rows learn faster per second: 15 minutes of `mini`, TREC
    13.3k tokens/s against 12.0k, SST-2 11.2k against 9.4k and a held-out MLM loss of 5.86 against 6.38; the
    classifiers came out level (README, "Pretraining recipe")."""
    ends = [start + np.flatnonzero(piece == sep_id) for start, piece in sampled_chunks(tokens, sample)]
    ends = np.concatenate(ends) if ends else np.empty(0, dtype=np.int64)
    if not len(ends):
        return min(ROW_LENGTHS[-1], longest)
    need = np.percentile(np.diff(ends, prepend=-1) + 1, 95)  # a document's tokens and [SEP], and the row's [CLS]
    return min(next((n for n in ROW_LENGTHS if n >= need), ROW_LENGTHS[-1]), longest)


def held_out_validation(model, rows: RowSelection, ids: dict[str, int], vocab_size: int, cfg: PretrainConfig,
                        world: World):
    """on_validate for train(): the MLM loss and masked-token accuracy on the held-out rows, always masked the same
    way (from cfg.seed), so that the figures of one run compare from step to step. Rank 0 scores; all learn it."""
    input_ids = torch.from_numpy(rows.take(np.arange(len(rows))))

    def validate(epoch: int, step: int) -> dict:
        figures = [0.0, 0.0, 0]
        if world.is_main and (metrics := masked_lm_metrics(model, input_ids, ids, vocab_size, cfg.mlm_probability,
                                                           cfg.seed, device=world.device)):
            figures = [metrics["cross_entropy"], metrics["accuracy"], metrics["n_tokens"]]
        loss, accuracy, n_tokens = world.all_sum(figures)
        validate.last = {"val_loss": loss, "val_masked_accuracy": accuracy} if n_tokens else {}  # none masked: none
        return validate.last

    validate.last = {}
    return validate


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


def prepare_out_dir(out_dir: Path, run: RunOptions, world: World | None = None) -> MetricsLog:
    """The run folder: refused when it holds something, unless --overwrite (replace) or --resume (continue).

    With several processes, rank 0 prepares it (and logs) while the others wait.
    """
    if world is not None and world.size > 1:
        if not world.is_main:
            world.barrier()
            return NullLog()
        log = prepare_out_dir(out_dir, run)
        world.barrier()
        return log
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


def batch_identity(cfg, world: World) -> dict:
    """The training settings a resume must share: those of `cfg`, with the global batch in place of how it is cut
    (batch size, accumulation, processes), which may change between the two parts of a run."""
    train = {k: v for k, v in asdict(cfg).items() if k not in ("batch_size", "grad_accum")}
    return {**train, "global_batch": global_batch(cfg, world)}


def global_batch(cfg, world: World) -> int:
    return cfg.batch_size * cfg.grad_accum * world.size


def describe_batch(cfg, world: World, what: str) -> str:
    """'batches of 64 sequences' and, when it is cut, how: '(16 x 2 accumulated x 2 processes)'."""
    parts = [f"{cfg.batch_size}"] + ([f"{cfg.grad_accum} accumulated"] if cfg.grad_accum > 1 else []) + \
        ([f"{world.size} processes"] if world.size > 1 else [])
    return f"batches of {global_batch(cfg, world)} {what}" + (f" ({' x '.join(parts)})" if len(parts) > 1 else "")


def loop_config(cfg, run: RunOptions, max_steps: int, precision: str, description: str) -> LoopConfig:
    return LoopConfig(max_steps=max_steps, lr=cfg.lr, warmup_ratio=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
                      grad_clip=cfg.grad_clip, log_every=cfg.log_every, precision=precision,
                      description=description, quiet=run.quiet, save_every=run.save_every,
                      save_minutes=run.save_minutes, keep_checkpoints=run.keep_checkpoints, on_nan=run.on_nan,
                      compile=run.compile, max_minutes=cfg.max_minutes, validate_every=cfg.val_every)


def pretrain(data: list[Path], tokenizer_dir: Path, out_dir: Path, model_config: BertConfig, cfg: PretrainConfig,
             run: RunOptions | None = None) -> dict:
    """Pretrain BertForMaskedLM on `data` and write a base checkpoint to out_dir. Returns the run summary.

    run.scrub_kinds: PII kinds to replace before training; a tokenizer trained with scrubbing passes it on anyway.
    Under torchrun, every process runs this with the same arguments (see tinylm.distributed).
    """
    run = (run or RunOptions()).check()
    with distributed.session(run.device) as world:
        return _pretrain(data, tokenizer_dir, out_dir, model_config, cfg, run, world)


def _pretrain(data: list[Path], tokenizer_dir: Path, out_dir: Path, model_config: BertConfig, cfg: PretrainConfig,
              run: RunOptions, world: World) -> dict:
    started = now()
    check_positive(cfg, ("max_steps", "epochs", "max_minutes", "batch_size", "grad_accum", "lr", "seq_len",
                         "log_every", "val_every"))
    if not 0 < cfg.mlm_probability < 1:
        raise TinyLMError(f"--mlm-probability must be in (0, 1), got {cfg.mlm_probability:g}")
    if cfg.embedding_init not in EMBEDDING_INITS:
        raise TinyLMError(f"--embedding-init must be one of {', '.join(EMBEDDING_INITS)}, got {cfg.embedding_init!r}")
    if not 0 <= cfg.val_fraction < 1:
        raise TinyLMError(f"--val-fraction must be in [0, 1), got {cfg.val_fraction:g} (0 holds nothing out)")
    tokenizer = load_tokenizer(tokenizer_dir)
    scrub_kinds = resolve_scrub(run.scrub_kinds, tokenizer_dir, tokenizer)
    model_config.vocab_size = tokenizer.get_vocab_size()
    model_config.pad_token_id = tokenizer.token_to_id(PAD)
    model_config.validate()
    if cfg.seq_len is not None and cfg.seq_len > model_config.max_position_embeddings:
        raise TinyLMError(f"--seq-len {cfg.seq_len} exceeds the model's max_position_embeddings "
                          f"{model_config.max_position_embeddings}")
    if cfg.seq_len is not None and cfg.seq_len < 2:
        raise TinyLMError(f"--seq-len must be at least 2 ([CLS] and one token), got {cfg.seq_len}")
    log = prepare_out_dir(out_dir, run, world)
    dev = world.device
    precision = resolve_precision(run.precision, dev)

    inputs, hashing_s = file_records(data)
    key = corpus_key(inputs, Path(tokenizer_dir) / TOKENIZER_FILE, cfg.text_column, run.encoding, scrub_kinds)
    with world.local_main_first():  # encoded once per machine; the others read the cache
        shards = encode_corpus(data, tokenizer, key, run.cache_dir, cfg.text_column, run.encoding, scrub_kinds,
                               run.quiet, console)
    fitted = cfg.seq_len is None
    if fitted:
        cfg.seq_len = fitted_seq_len(shards.tokens, tokenizer.token_to_id(SEP), model_config.max_position_embeddings)
    if cfg.batch_size is None:
        cfg.batch_size = max(1, ROW_TOKENS // cfg.seq_len)
    packed = PackedRows(shards.tokens, cfg.seq_len, tokenizer.token_to_id(CLS), tokenizer.token_to_id(PAD))
    rows, held_out = hold_out(packed, cfg.val_fraction, cfg.seed, HELD_OUT_ROWS)
    steps_per_epoch = math.ceil(len(rows) / global_batch(cfg, world))
    if cfg.max_steps is None:  # from --epochs; with only --max-minutes, the budget alone decides
        cfg.max_steps = BUDGET_LIMIT if cfg.max_minutes and not cfg.epochs else \
            max(1, math.ceil((cfg.epochs or 1) * steps_per_epoch))
    length = f"{cfg.max_minutes:g} minutes" if cfg.max_steps == BUDGET_LIMIT else \
        f"{cfg.max_steps:,} steps ({cfg.max_steps / steps_per_epoch:.2f} epochs)" + \
        (f" or {cfg.max_minutes:g} minutes" if cfg.max_minutes else "")
    held = f" ({len(held_out):,} held out to measure the MLM loss on unseen text)" if len(held_out) else \
        " (too few to hold some out for a held-out loss)" if cfg.val_fraction else ""
    fit = " (95% of the documents fit whole)" if fitted else ""
    console.print(f"pretraining on {shards.meta['n_documents']:,} documents = {len(packed):,} rows of {cfg.seq_len} "
                  f"tokens{fit}{held}; {length} of {describe_batch(cfg, world, 'rows')}, {precision} on {dev.type}")

    if world.is_main:
        (Path(out_dir) / RUN_CONFIG).write_text(to_toml({"model": model_config, "train": cfg}), encoding="utf-8")
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(model_config)
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
    with torch.no_grad():  # a resumed run loads its own weights over these
        model.cls.predictions.bias.copy_(unigram_log_prior(shards.tokens, model_config.vocab_size, list(ids.values())))
        if cfg.embedding_init == "cooccurrence":
            embeddings = model.bert.embeddings.word_embeddings.weight
            embeddings.copy_(cooccurrence_embeddings(shards.tokens, embeddings, list(ids.values())))
    batches = MLMBatches(rows, cfg.batch_size, cfg.seed, ids, model_config.vocab_size, cfg.mlm_probability,
                         world.layout(cfg.grad_accum))
    args = {"stage": "pretrain", "command": run.command, "data": [str(p) for p in data],
            "tokenizer": str(tokenizer_dir), "precision": precision, "train": asdict(cfg),
            "processes": world.size, "scrub_pii": list(scrub_kinds or [])}
    identity = {"inputs": [r["sha256"] for r in inputs], "tokens": key, "model": asdict(model_config),
                "train": batch_identity(cfg, world), "precision": precision}
    loop = loop_config(cfg, run, cfg.max_steps, precision, "pretrain")
    validate = held_out_validation(model, held_out, ids, model_config.vocab_size, cfg, world) if len(held_out) else None
    summary = train(model, batches, loop, log, dev, out_dir=Path(out_dir), run_args=identity, resume=run.resume,
                    on_validate=validate, world=world)
    if validate is not None:
        summary.update(validate.last)
    args["summary"] = summary
    if world.is_main:
        manifest = build_manifest("mlm", inputs, [parent_record(tokenizer_dir, "tokenizer")],
                                  {**args, "model": asdict(model_config)}, run.command, started, run.record_host,
                                  scrub_record(scrub_kinds, shards.meta.get("scrub_counts")), hashing_s)
        save_checkpoint(out_dir, model, tokenizer, args, provenance=manifest)
        shutil.rmtree(checkpoint_root(out_dir), ignore_errors=True)  # the run is complete: its model is the hand-off
    return summary

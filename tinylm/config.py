"""Typed configuration: the model (BertConfig's field names), the two training stages, presets and TOML files.

Precedence, lowest to highest: preset -> TOML file (`[model]`, `[train]`) -> command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tinylm.errors import TinyLMError


@dataclass
class BertConfig:
    """Model hyper-parameters, named as in transformers.BertConfig so config.json reads the same."""

    vocab_size: int = 8000
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02

    def validate(self, source: str = "model config") -> "BertConfig":
        positive = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                    "max_position_embeddings", "type_vocab_size")
        for name in positive:
            if getattr(self, name) <= 0:
                raise TinyLMError(f"{source}: {name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise TinyLMError(f"{source}: hidden_size {self.hidden_size} is not divisible by "
                              f"num_attention_heads {self.num_attention_heads}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TinyLMError(f"{source}: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.hidden_act != "gelu":
            raise TinyLMError(f"{source}: hidden_act {self.hidden_act!r} is not supported (only 'gelu')")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise TinyLMError(f"{source}: pad_token_id {self.pad_token_id} is outside the vocabulary")
        if self.layer_norm_eps <= 0 or self.initializer_range <= 0:
            raise TinyLMError(f"{source}: layer_norm_eps and initializer_range must be positive")
        return self


@dataclass
class PretrainConfig:
    """Masked-language-model pretraining. Keys are the `tinylm pretrain` flag names (dashes as underscores)."""

    max_steps: int | None = None  # None: derived from epochs, else the preset's default
    epochs: float | None = None
    max_minutes: float | None = None  # wall-clock budget; the step count and LR schedule are fitted to it
    batch_size: int | None = None  # rows per process and forward pass; None: 4,096 tokens' worth (32 rows of 128)
    grad_accum: int = 1  # micro-batches per step on each process; a step's global batch is x grad_accum x processes
    lr: float = 1e-3
    seq_len: int | None = None  # tokens per row; None: fitted to the corpus's documents (pretrain.fitted_seq_len)
    seed: int = 0
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # BERT masked 15%; at a budget of a few thousand steps twice the predictions per step learn faster (Wettig et
    # al., 2022, "Should You Mask 15% in Masked Language Modeling?"). TREC/AG News/SST-2 probe: see README.
    mlm_probability: float = 0.3
    # "cooccurrence": word embeddings start as PPMI + SVD vectors of the corpus (pretrain.cooccurrence_embeddings),
    # so that words used alike start alike; "random": BERT's N(0, 0.02)
    embedding_init: str = "cooccurrence"
    # Rows held out of training (at most 256) and scored every val_every steps: the MLM loss on text the model has
    # not seen, next to the training loss on text it has. A small corpus seen for many epochs is memorised.
    val_fraction: float = 0.05
    val_every: int = 200
    text_column: str = "text"
    log_every: int = 10


@dataclass
class FinetuneConfig:
    """Sequence-classification fine-tuning. Keys are the `tinylm finetune` flag names."""

    epochs: int = 10
    max_minutes: float | None = None  # wall-clock budget: as many whole epochs (up to `epochs`) as fit
    batch_size: int = 32  # per process and forward pass; a step's global batch is x grad_accum x processes
    grad_accum: int = 1
    lr: float = 5e-4  # small encoders trained from scratch want more than BERT-base's 2e-5..1e-4
    seq_len: int | None = None  # None: 256, or the base model's max_position_embeddings if smaller
    pooling: str = "max"  # "max" or "mean" of the token states, or BERT's "cls"
    class_weights: str = "none"  # or "balanced": each class weighs n / (k * n_class) in the loss
    long_docs: str = "truncate"  # or "windows": read long documents in windows (mean of their probabilities)
    ema_decay: float = 0.995  # validate and keep a moving average of the weights (0: the last weights)
    dropout: float = 0.1  # hidden and attention dropout while fine-tuning, whatever the base was pretrained with
    seed: int = 0
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    val_every: int | None = None  # steps between validations inside an epoch (None: at every epoch's end only)
    text_column: str = "text"
    label_column: str = "label"
    log_every: int = 10


@dataclass
class RunOptions:
    """How a training run is carried out, not what it learns: hardware, output folder, checkpoints, safety."""

    precision: str = "auto"  # auto: bf16 where the hardware runs it natively, else fp32
    device: str = "auto"
    compile: bool = False  # torch.compile the model
    overwrite: bool = False
    resume: bool = False
    save_every: int | None = None  # steps between resumable checkpoints
    save_minutes: float | None = 10.0  # minutes between resumable checkpoints
    keep_checkpoints: int = 2
    on_nan: str = "stop"  # or "skip"
    quiet: bool = False
    encoding: str = "utf-8"
    command: str = ""
    scrub_kinds: tuple[str, ...] | None = None
    record_host: bool = False
    cache_dir: Path | None = None  # token shards; default $TINYLM_CACHE or ~/.cache/tinylm

    def check(self):
        if self.save_every is not None and self.save_every <= 0:
            raise TinyLMError(f"--save-every must be positive, got {self.save_every}")
        if self.save_minutes is not None and self.save_minutes <= 0:
            raise TinyLMError(f"--save-minutes must be positive, got {self.save_minutes}")
        if self.keep_checkpoints < 1:
            raise TinyLMError(f"--keep-checkpoints must be at least 1, got {self.keep_checkpoints}")
        if self.on_nan not in ("stop", "skip"):
            raise TinyLMError(f"--on-nan must be stop or skip, got {self.on_nan!r}")
        if self.resume and self.overwrite:
            raise TinyLMError("--resume continues the run in --out and --overwrite replaces it: give one of them")
        return self


@dataclass
class Preset:
    model: BertConfig
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


def preset_model(**sizes) -> BertConfig:
    """Pretraining runs without dropout: with a budget of steps the model underfits, and dropout only slows it
    down (Geiping & Goldstein, 2022, "Cramming"). Fine-tuning puts it back (FinetuneConfig.dropout)."""
    return BertConfig(**sizes, max_position_embeddings=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


PRESETS: dict[str, Preset] = {
    # For tests and the demo: trains in seconds to minutes on a 2-core CPU.
    "tiny": Preset(
        preset_model(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
        PretrainConfig(max_steps=600, lr=2e-3),
    ),
    # For a budget of minutes on a laptop CPU: 2.6x the tokens/s of `small` (12.3k against 4.7k on 2 cores). In 15
    # minutes `small` gets ~1,000 steps and barely leaves the unigram plateau of MLM loss; this size gets ~2,700,
    # and a better classifier from them (AG News, validation split of train, a probe of 3,500 against 1,000
    # steps: 0.911 against 0.877).
    "mini": Preset(
        preset_model(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
        PretrainConfig(max_steps=1200, lr=1e-3),
    ),
    # A sensible start on a laptop CPU, given an hour.
    "small": Preset(
        preset_model(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
        PretrainConfig(max_steps=300, lr=1e-3),
    ),
    # BERT-base sizes (Devlin et al., 2019): for a GPU, or patience.
    "base": Preset(
        preset_model(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
        PretrainConfig(max_steps=10000, lr=1e-4),
    ),
}


def _check_type(value: Any, annotation: str, where: str) -> Any:
    """Validate a JSON/TOML value against a dataclass field's annotation (given as a string)."""
    kinds = [a.strip() for a in annotation.split("|")]
    if value is None and "None" in kinds:
        return value
    if "int" in kinds and isinstance(value, int) and not isinstance(value, bool):
        return value
    if "float" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if "str" in kinds and isinstance(value, str):
        return value
    if "bool" in kinds and isinstance(value, bool):
        return value
    raise TinyLMError(f"{where} must be of type {annotation}, got {value!r}")


def from_dict(cls, data: dict, source: str, base=None, allow_extra: bool = False):
    """Build dataclass `cls` from `data` over the defaults in `base`; unknown keys are an error that names them."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown and not allow_extra:
        raise TinyLMError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(known)}")
    values = dataclasses.asdict(base) if base is not None else {}
    for name, value in data.items():
        if name in known:
            values[name] = _check_type(value, str(known[name].type), f"{source}: {name}")
    return cls(**values)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def read_toml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TinyLMError(f"config file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TinyLMError(f"config file {path} is not valid TOML: {e}") from None
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise TinyLMError(f"config file {path}: unknown table(s) {', '.join(unknown)}; use [model] and [train]")
    return data


def resolve_pretrain(preset: str, config_file: Path | None, flags: dict) -> tuple[BertConfig, PretrainConfig]:
    """Preset, then the TOML file, then the flags that were given (None = not given)."""
    if preset not in PRESETS:
        raise TinyLMError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    model, train = PRESETS[preset].model, PRESETS[preset].pretrain
    chosen = set()
    if config_file is not None:
        data = read_toml(config_file)
        model = from_dict(BertConfig, data.get("model", {}), f"{config_file} [model]", base=model)
        train = from_dict(PretrainConfig, data.get("train", {}), f"{config_file} [train]", base=train)
        chosen |= set(data.get("train", {}))
    given = {k: v for k, v in flags.items() if v is not None}
    train = from_dict(PretrainConfig, given, "command line", base=train)
    chosen |= set(given)
    if chosen & {"epochs", "max_minutes"} and "max_steps" not in chosen:
        train.max_steps = None  # not the preset's: the epochs or the time budget decide the length
    return model, train


def resolve_finetune(config_file: Path | None, flags: dict) -> FinetuneConfig:
    train = FinetuneConfig()
    if config_file is not None:
        data = read_toml(config_file)
        if "model" in data:
            raise TinyLMError(f"{config_file}: finetune takes the model from --base; remove the [model] table")
        train = from_dict(FinetuneConfig, data.get("train", {}), f"{config_file} [train]", base=train)
    return from_dict(FinetuneConfig, {k: v for k, v in flags.items() if v is not None}, "command line", base=train)


def check_positive(obj, names: tuple[str, ...], source: str = "command line"):
    for name in names:
        value = getattr(obj, name)
        if value is not None and value <= 0:
            raise TinyLMError(f"{source}: --{name.replace('_', '-')} must be positive, got {value}")


def to_toml(tables: dict[str, Any]) -> str:
    """Dataclasses as TOML tables that read_toml/from_dict read back to the same values (None stays unset)."""
    lines = []
    for name, obj in tables.items():
        lines.append(f"[{name}]")
        for key, value in to_dict(obj).items():
            if value is None:
                lines.append(f"# {key} is unset")
            elif isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{key} = {value!r}")
            else:
                lines.append(f"{key} = {json.dumps(str(value), ensure_ascii=False)}")
        lines.append("")
    return "\n".join(lines)


def dumps(obj) -> str:
    return json.dumps(to_dict(obj) if dataclasses.is_dataclass(obj) else obj, indent=2, sort_keys=False)

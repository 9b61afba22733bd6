"""Typed configuration: the model (BertConfig's field names), the two training stages, presets and TOML files.

Precedence, lowest to highest: preset -> TOML file (`[model]`, `[train]`) -> command-line flags.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from enum import StrEnum
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


class Choice(StrEnum):
    """A setting with a fixed set of values: the CLI lists and checks them, TOML and JSON hold the plain string."""

    @classmethod
    def values(cls) -> tuple[str, ...]:
        return tuple(member.value for member in cls)

    @classmethod
    def check(cls, flag: str, value: str):
        if value not in cls.values():
            raise TinyLMError(f"{flag} must be one of {', '.join(cls)}, got {value!r}")


class Precision(Choice):
    auto = "auto"  # bf16 where the hardware runs it natively, else fp32
    fp32 = "fp32"
    bf16 = "bf16"


class Device(Choice):
    auto = "auto"  # a CUDA GPU when there is one
    cpu = "cpu"
    cuda = "cuda"


class OnNan(Choice):
    stop = "stop"  # end with an error naming the step and the last good checkpoint
    skip = "skip"  # drop the batch and go on


class EmbeddingInit(Choice):
    cooccurrence = "cooccurrence"  # word vectors from the corpus's co-occurrence counts (PPMI + SVD)
    random = "random"  # BERT's N(0, 0.02)


class Pooling(Choice):
    max = "max"
    mean = "mean"
    cls = "cls"


class LongDocs(Choice):
    truncate = "truncate"
    windows = "windows"


class ClassWeights(Choice):
    none = "none"
    balanced = "balanced"


class Thresholds(Choice):
    per_label = "per-label"  # each label's own best F1 on validation where it costs micro-F1 nothing (labels.py)
    global_ = "global"  # the one threshold with the best micro-F1 on validation


class ExportFormat(Choice):
    hf = "hf"  # a folder transformers loads with from_pretrained
    onnx = "onnx"  # model.onnx that ONNX Runtime runs, with the tokenizer and the settings to serve it


def check_positive(obj, names: tuple[str, ...]):
    for name in names:
        value = getattr(obj, name)
        if value is not None and value <= 0:
            raise TinyLMError(f"--{flag(name)} must be positive, got {value}")


def check_fraction(name: str, value: float, low_open: bool = False, note: str = ""):
    """value in [0, 1), or (0, 1) with low_open."""
    if not (0 < value < 1 if low_open else 0 <= value < 1):
        raise TinyLMError(f"--{flag(name)} must be in {'(' if low_open else '['}0, 1), got {value:g}{note}")


def flag(name: str) -> str:
    return name.replace("_", "-")


@dataclass
class TrainArgs:
    """What the training loops of both stages share. Each stage embeds one with its own defaults; TOML files and
    flags name its fields in the stage's flat [train] table."""

    lr: float = 1e-3  # peak learning rate
    batch_size: int | None = None  # sequences per process and forward pass
    grad_accum: int = 1  # micro-batches per step on each process; a step's global batch is x grad_accum x processes
    seq_len: int | None = None  # tokens per sequence
    max_minutes: float | None = None  # wall-clock budget; the step count and LR schedule are fitted to it
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    val_every: int | None = None  # steps between validations
    log_every: int = 10
    text_column: str = "text"

    def __post_init__(self):
        check_positive(self, ("lr", "batch_size", "grad_accum", "seq_len", "max_minutes", "val_every", "log_every",
                              "grad_clip"))
        check_fraction("warmup_ratio", self.warmup_ratio)
        if self.weight_decay < 0:
            raise TinyLMError(f"--weight-decay must not be negative, got {self.weight_decay:g}")


class StageConfig:
    """A stage's settings: its own fields and its TrainArgs, built, read and written as one flat table."""

    train: TrainArgs

    @classmethod
    def of(cls, **values):
        """The stage's defaults with `values` (flat: the stage's and TrainArgs' field names) over them."""
        return from_dict(cls, values, "arguments")

    def flat(self) -> dict:
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "train"}
        return {**dataclasses.asdict(self.train), **own}


@dataclass
class PretrainConfig(StageConfig):
    """Masked-language-model pretraining. Keys are the `tinylm pretrain` flag names (dashes as underscores)."""

    train: TrainArgs = field(default_factory=lambda: TrainArgs(lr=1e-3, val_every=200))
    max_steps: int | None = None  # None: derived from epochs, else the preset's default
    epochs: float | None = None
    # BERT masked 15%; at a budget of a few thousand steps twice the predictions per step learn faster (Wettig et
    # al., 2022, "Should You Mask 15% in Masked Language Modeling?"); see docs/pretraining.md.
    mlm_probability: float = 0.3
    embedding_init: str = EmbeddingInit.cooccurrence.value
    # Rows held out of training (at most 256) and scored every val_every steps: the MLM loss on text the model has
    # not seen, next to the training loss on text it has. A small corpus seen for many epochs is memorised.
    val_fraction: float = 0.05

    def __post_init__(self):
        check_positive(self, ("max_steps", "epochs"))
        check_fraction("mlm_probability", self.mlm_probability, low_open=True)
        EmbeddingInit.check("--embedding-init", self.embedding_init)
        check_fraction("val_fraction", self.val_fraction, note=" (0 holds nothing out)")
        if self.train.seq_len is not None and self.train.seq_len < 2:
            raise TinyLMError(f"--seq-len must be at least 2 ([CLS] and one token), got {self.train.seq_len}")


@dataclass
class FinetuneConfig(StageConfig):
    """Sequence-classification fine-tuning. Keys are the `tinylm finetune` flag names."""

    # small encoders trained from scratch want a higher rate than BERT-base's 2e-5..1e-4
    train: TrainArgs = field(default_factory=lambda: TrainArgs(lr=5e-4, batch_size=32, warmup_ratio=0.1))
    epochs: int = 10  # with max_minutes: as many whole epochs (up to this) as fit
    pooling: str = Pooling.max.value  # of the token states, or BERT's [CLS] pooler
    class_weights: str = ClassWeights.none.value  # balanced: each class weighs n / (k * n_class) in the loss
    long_docs: str = LongDocs.truncate.value  # windows: read long documents in windows (mean of their probabilities)
    ema_decay: float = 0.995  # validate and keep a moving average of the weights (0: the last weights)
    dropout: float = 0.1  # hidden and attention dropout while fine-tuning, whatever the base was pretrained with
    val_fraction: float = 0.1
    label_column: str = "label"
    # Multi-label: each document has any number of labels, joined by label_separator in its cell (empty: none).
    multi_label: bool = False
    label_separator: str = "|"
    thresholds: str = Thresholds.per_label.value  # how the decision thresholds are chosen on validation

    MULTI_LABEL_FIELDS = ("multi_label", "label_separator", "thresholds")

    def __post_init__(self):
        check_positive(self, ("epochs",))
        Thresholds.check("--thresholds", self.thresholds)
        if not self.label_separator.strip():
            raise TinyLMError("--label-separator must not be empty or blank")
        if not self.multi_label:
            changed = [name for name in self.MULTI_LABEL_FIELDS[1:] if getattr(self, name) != getattr(FinetuneConfig, name)]
            if changed:
                raise TinyLMError(f"--{flag(changed[0])} is for multi-label data: add --multi-label")
        Pooling.check("--pooling", self.pooling)
        ClassWeights.check("--class-weights", self.class_weights)
        LongDocs.check("--long-docs", self.long_docs)
        check_fraction("ema_decay", self.ema_decay, note=" (0 keeps the last weights)")
        check_fraction("dropout", self.dropout)
        check_fraction("val_fraction", self.val_fraction, low_open=True)

    def flat(self) -> dict:
        """The multi-label settings appear only in a multi-label run, so that a single-label run's files (its
        training_args.json and run_config.toml) are what they were before multi-label existed."""
        values = super().flat()
        if not self.multi_label:
            for name in self.MULTI_LABEL_FIELDS:
                del values[name]
        return values


@dataclass
class RunOptions:
    """How a training run is carried out, not what it learns: hardware, output folder, checkpoints, safety."""

    precision: str = Precision.auto.value
    device: str = Device.auto.value
    compile: bool = False  # torch.compile the model
    overwrite: bool = False
    resume: bool = False
    save_every: int | None = None  # steps between resumable checkpoints
    save_minutes: float | None = 10.0  # minutes between resumable checkpoints
    keep_checkpoints: int = 2
    on_nan: str = OnNan.stop.value
    quiet: bool = False
    encoding: str = "utf-8"
    command: str = ""
    scrub_kinds: tuple[str, ...] | None = None
    record_host: bool = False
    cache_dir: Path | None = None  # token shards; default $TINYLM_CACHE or ~/.cache/tinylm

    def __post_init__(self):
        Precision.check("--precision", self.precision)
        Device.check("--device", self.device)
        OnNan.check("--on-nan", self.on_nan)
        check_positive(self, ("save_every", "save_minutes"))
        if self.keep_checkpoints < 1:
            raise TinyLMError(f"--keep-checkpoints must be at least 1, got {self.keep_checkpoints}")
        if self.resume and self.overwrite:
            raise TinyLMError("--resume continues the run in --out and --overwrite replaces it: give one of them")


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
    """Build dataclass `cls` from `data` over the defaults in `base` (or the class's own); unknown keys are an error
    that names them. A stage config takes its TrainArgs' fields flat, beside its own. Invalid values are one error
    naming the source."""
    known = {f.name: f for f in fields(cls) if f.name != "train"}
    nested = {f.name: f for f in fields(TrainArgs)} if issubclass(cls, StageConfig) else {}
    unknown = sorted(set(data) - set(known) - set(nested))
    if unknown and not allow_extra:
        raise TinyLMError(f"{source}: unknown key(s) {', '.join(unknown)}; known keys: "
                          f"{', '.join([*nested, *known])}")
    base = base if base is not None else cls()
    try:
        own = {name: _check_type(data[name], str(f.type), f"{source}: {name}") for name, f in known.items() if name in data}
        if not nested:
            return dataclasses.replace(base, **own)
        train = {name: _check_type(data[name], str(f.type), f"{source}: {name}")
                 for name, f in nested.items() if name in data}
        return dataclasses.replace(base, train=dataclasses.replace(base.train, **train), **own)
    except TinyLMError as e:
        raise e if str(e).startswith(source) else TinyLMError(f"{source}: {e}") from None


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


def resolve_pretrain(preset: str | None, config_file: Path | None, flags: dict, base: BertConfig | None = None,
                     base_name: str = "the base") -> tuple[BertConfig, PretrainConfig]:
    """Preset, then the TOML file, then the flags that were given (None = not given); preset None is "small".

    With `base` (continued pretraining, `--init`), the model is the base's: a preset or a [model] table that sizes
    it otherwise is refused, and the training defaults are those of the preset of the base's size, if there is one.
    Dropout is pretraining's (none) whatever the base was trained with."""
    if preset is not None and preset not in PRESETS:
        raise TinyLMError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    given = {k: v for k, v in flags.items() if v is not None}
    if given.get("max_steps") is not None and given.get("epochs") is not None:
        raise TinyLMError("give --max-steps or --epochs, not both")
    if base is None:
        model, train = PRESETS[preset or DEFAULT_PRESET].model, PRESETS[preset or DEFAULT_PRESET].pretrain
    else:
        model, train = base_model(base, preset, base_name)
    chosen = set()
    if config_file is not None:
        data = read_toml(config_file)
        model = from_dict(BertConfig, data.get("model", {}), f"{config_file} [model]", base=model)
        if base is not None:
            check_same_size(model, base, f"{config_file} [model]", base_name)
        train = from_dict(PretrainConfig, data.get("train", {}), f"{config_file} [train]", base=train)
        chosen |= set(data.get("train", {}))
    train = from_dict(PretrainConfig, given, "command line", base=train)
    chosen |= set(given)
    if base is not None and "embedding_init" in chosen:
        raise TinyLMError(f"--embedding-init initialises a fresh model; --init {base_name} starts from the base's own "
                          "embeddings: drop one of them")
    if chosen & {"epochs", "max_minutes"} and "max_steps" not in chosen:
        train = dataclasses.replace(train, max_steps=None)  # not the preset's: the epochs or the budget decide
    return model, train


# What makes a model the size it is; continued pretraining keeps all of these from its base.
SIZE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id")
PRESET_SIZE_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


def base_model(base: BertConfig, preset: str | None, base_name: str) -> tuple[BertConfig, PretrainConfig]:
    """The model and training defaults of continued pretraining: the base's size, pretraining's dropout, and the
    training settings of the preset that has the base's size (given or found), else the stage's defaults."""
    def same(name: str) -> bool:
        return all(getattr(PRESETS[name].model, f) == getattr(base, f) for f in PRESET_SIZE_FIELDS)

    if preset is not None and not same(preset):
        sizes = ", ".join(f"{f} {getattr(PRESETS[preset].model, f)} vs {getattr(base, f)}" for f in PRESET_SIZE_FIELDS
                          if getattr(PRESETS[preset].model, f) != getattr(base, f))
        raise TinyLMError(f"--preset {preset} is another model size than the base {base_name} ({sizes}); continued "
                          "pretraining keeps the base's size: drop --preset")
    preset = preset or next((name for name in PRESETS if same(name)), None)
    dropout = PRESETS[DEFAULT_PRESET].model  # every preset pretrains without dropout (preset_model)
    model = dataclasses.replace(base, hidden_dropout_prob=dropout.hidden_dropout_prob,
                                attention_probs_dropout_prob=dropout.attention_probs_dropout_prob)
    return model, PRESETS[preset].pretrain if preset else PretrainConfig()


def check_same_size(model: BertConfig, base: BertConfig, source: str, base_name: str):
    changed = [f for f in SIZE_FIELDS if getattr(model, f) != getattr(base, f)]
    if changed:
        raise TinyLMError(f"{source} sets {changed[0]} = {getattr(model, changed[0])!r}, but the base {base_name} has "
                          f"{getattr(base, changed[0])!r}; continued pretraining keeps the base's model size: leave "
                          f"{changed[0]} out")


def resolve_finetune(config_file: Path | None, flags: dict) -> FinetuneConfig:
    train = FinetuneConfig()
    if config_file is not None:
        data = read_toml(config_file)
        if "model" in data:
            raise TinyLMError(f"{config_file}: finetune takes the model from --base; remove the [model] table")
        train = from_dict(FinetuneConfig, data.get("train", {}), f"{config_file} [train]", base=train)
    return from_dict(FinetuneConfig, {k: v for k, v in flags.items() if v is not None}, "command line", base=train)


def to_toml(tables: dict[str, Any]) -> str:
    """Dataclasses as TOML tables that read_toml/from_dict read back to the same values (None stays unset)."""
    lines = []
    for name, obj in tables.items():
        lines.append(f"[{name}]")
        values = obj.flat() if isinstance(obj, StageConfig) else dataclasses.asdict(obj)
        for key, value in values.items():
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


@dataclass
class Preset:
    model: BertConfig
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


def preset_model(**sizes) -> BertConfig:
    """Pretraining runs without dropout: with a budget of steps the model underfits, and dropout only slows it
    down (Geiping & Goldstein, 2022, "Cramming"). Fine-tuning puts it back (FinetuneConfig.dropout)."""
    return BertConfig(**sizes, max_position_embeddings=512, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


DEFAULT_PRESET = "small"
SELF_TRAINING_ROUNDS = 2  # `finetune --unlabelled`: student rounds after the plain fine-tune (see self_training.py)
PRESETS: dict[str, Preset] = {
    # For tests and the demo: trains in seconds to minutes on a 2-core CPU.
    "tiny": Preset(
        preset_model(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256),
        PretrainConfig.of(max_steps=600, lr=2e-3),
    ),
    # For a budget of minutes on a laptop CPU: in a short budget `small` gets too few steps to leave the unigram
    # plateau of the MLM loss, and this size, several times faster, learns more (docs/pretraining.md).
    "mini": Preset(
        preset_model(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
        PretrainConfig.of(max_steps=1200, lr=1e-3),
    ),
    # A sensible start on a laptop CPU, given an hour.
    "small": Preset(
        preset_model(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
        PretrainConfig.of(max_steps=300, lr=1e-3),
    ),
    # BERT-base sizes (Devlin et al., 2019): for a GPU, or patience.
    "base": Preset(
        preset_model(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
        PretrainConfig.of(max_steps=10000, lr=1e-4),
    ),
}

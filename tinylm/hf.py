"""Hugging Face interop: export a checkpoint as a folder transformers loads, import a local BERT folder.

Both directions are plain files (JSON, safetensors, tokenizer.json), so this module never imports transformers
and the core install does not grow; `pip install tinylm[hf]` is only needed to load the exported folder.
Our parameter names are Hugging Face's (see model.py), so the weights pass through key for key.

Nothing here touches the network: a folder goes in, a folder comes out.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, decoders

from tinylm import __version__
from tinylm.checkpoint import (KINDS, TIED_KEYS, check_out_dir, commit_dir, load_checkpoint, model_kind,
                               save_checkpoint, save_weights, stored_state)
from tinylm.config import BertConfig, from_dict
from tinylm.errors import TinyLMError
from tinylm.evaluate import checkpoint_long_docs, checkpoint_seq_len
from tinylm.labels import SINGLE_LABEL, LabelScheme
from tinylm.files import CONFIG_FILE, PROVENANCE_FILE, TOKENIZER_FILE, WEIGHTS_FILE, read_json, write_json
from tinylm.model import BertForMaskedLM, BertForSequenceClassification
from tinylm.provenance import build_manifest, command_line, file_records, now, parent_record, read_manifest
from tinylm.tokenizer import CLS, MASK, PAD, SEP, SPECIAL_TOKENS, UNK

PICKLE_FILES = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
SHARD_INDEX = "model.safetensors.index.json"
VOCAB_FILE = "vocab.txt"
SPECIAL_TOKENS_MAP = {"unk_token": UNK, "sep_token": SEP, "pad_token": PAD, "cls_token": CLS, "mask_token": MASK}

# transformers.BertConfig's defaults, for config.json files that leave a field out.
HF_DEFAULTS = asdict(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                intermediate_size=3072))
# HF fields whose non-default value changes the computation tinylm would do: (field, allowed values, why).
UNSUPPORTED = (
    ("is_decoder", (None, False), "a causal decoder, not a BERT encoder"),
    ("add_cross_attention", (None, False), "it has cross-attention layers"),
    ("position_embedding_type", (None, "absolute"), "tinylm implements absolute position embeddings only"),
    ("pruned_heads", (None, {}), "it has pruned attention heads"),
    ("problem_type", (None, "single_label_classification"), "tinylm imports single-label (softmax) classifiers only"),
)
BASE_ARCHITECTURES = ("BertForMaskedLM", "BertForPreTraining")
CLASSIFIER_ARCHITECTURE = "BertForSequenceClassification"
# A mean- or max-pooled classifier exports as transformers' BertModel + this file's pooling (remote code).
REMOTE_CODE = Path(__file__).with_name("modeling_tinylm.py")
REMOTE_ARCHITECTURE, REMOTE_MODEL_TYPE = "TinyLMBertForSequenceClassification", "tinylm_bert"


# ---- export ---------------------------------------------------------------------------------------------------

def export_hf(ckpt_dir: Path, out_dir: Path, overwrite: bool = False) -> dict:
    """Write ckpt_dir as a folder that transformers' Auto* classes load with from_pretrained(out_dir).

    A base or a [CLS]-pooled classifier is one of transformers' own classes. A mean- or max-pooled classifier,
    which BertForSequenceClassification cannot express, ships its few lines of modeling code in the folder
    (REMOTE_CODE; transformers' BertModel plus the pooling) and loads with trust_remote_code=True.
    Returns a summary: kind, architecture, remote_code, out_dir, files.
    """
    model, tokenizer, meta = load_checkpoint(ckpt_dir)  # validates every tensor against config.json
    kind = model_kind(model)
    remote_code = kind == "classifier" and model.pooling != "cls"
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    # The tied decoder weight/bias are stored once, under the embedding and cls.predictions.bias, as HF does.
    save_weights(stored_state(model), tmp / WEIGHTS_FILE, {"format": "pt"})
    config = hf_config(model.config, kind, meta.get("id2label"),
                       LabelScheme.from_meta(meta) if kind == "classifier" else None)
    if remote_code:
        config.update(remote_code_config(model.pooling))
        shutil.copyfile(REMOTE_CODE, tmp / REMOTE_CODE.name)
    write_json(tmp / CONFIG_FILE, config)
    tokenizer.save(str(tmp / TOKENIZER_FILE))
    # A classifier reads as many tokens as it was trained on, so that truncation=True in transformers reads what
    # `tinylm predict` reads; a base reads up to its position limit.
    max_length = checkpoint_seq_len(ckpt_dir, model) if kind == "classifier" else model.config.max_position_embeddings
    write_json(tmp / "tokenizer_config.json", hf_tokenizer_config(tokenizer, max_length))
    write_json(tmp / "special_tokens_map.json", SPECIAL_TOKENS_MAP)
    write_json(tmp / PROVENANCE_FILE, export_manifest(ckpt_dir))
    commit_dir(tmp, out_dir)
    return {"kind": kind, "architecture": config["architectures"][0], "remote_code": remote_code,
            "long_docs": checkpoint_long_docs(ckpt_dir) if kind == "classifier" else None,
            "out_dir": str(out_dir), "files": sorted(p.name for p in out_dir.iterdir())}


def remote_code_config(pooling: str) -> dict:
    """config.json entries that point transformers at the modeling file in the folder (see modeling_tinylm.py)."""
    module = REMOTE_CODE.stem
    return {"architectures": [REMOTE_ARCHITECTURE], "model_type": REMOTE_MODEL_TYPE, "classifier_pooling": pooling,
            "auto_map": {"AutoConfig": f"{module}.TinyLMBertConfig",
                         "AutoModelForSequenceClassification": f"{module}.{REMOTE_ARCHITECTURE}"}}


def export_manifest(ckpt_dir: Path, fmt: str = "hf") -> dict:
    """An export is a copy: its manifest names the exported checkpoint as parent and carries its inputs on."""
    source = read_manifest(ckpt_dir) or {}
    return build_manifest(f"export-{fmt}", source.get("inputs", []), [parent_record(ckpt_dir, "exported")],
                          {"format": fmt, "source": str(ckpt_dir)}, command_line(), now(),
                          scrub=source.get("scrub_pii"))


def hf_config(config: BertConfig, kind: str, id2label: dict[int, str] | None, scheme: LabelScheme | None = None) -> dict:
    """transformers' config.json for BertForMaskedLM / BertForSequenceClassification, with our values. A multi-label
    classifier's problem_type makes transformers train it with BCEWithLogitsLoss; its thresholds ride along
    (transformers keeps unknown config fields), for whoever turns the sigmoids into labels."""
    data = {"architectures": [KINDS[kind]], "model_type": "bert", **asdict(config),
            "position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False,
            "tie_word_embeddings": True, "classifier_dropout": None, "use_cache": False,
            "tinylm_version": __version__}
    if id2label is not None:
        data["id2label"] = {str(i): label for i, label in id2label.items()}
        data["label2id"] = {label: i for i, label in id2label.items()}
        data["num_labels"] = len(id2label)
        data["problem_type"] = SINGLE_LABEL
        if scheme is not None and scheme.multi_label:
            data.update(scheme.config_fields())
    return data


def hf_tokenizer_config(tokenizer: Tokenizer, max_length: int) -> dict:
    """PreTrainedTokenizerFast, not BertTokenizerFast: transformers rebuilds a Bert tokenizer's pipeline from its
    own settings and would drop our digit-splitting pre-tokenizer; the generic class runs tokenizer.json as is.
    do_lower_case / strip_accents are still written so that readers of the file see how text is normalised.
    """
    normalizer = json.loads(tokenizer.to_str()).get("normalizer") or {}
    return {"tokenizer_class": "PreTrainedTokenizerFast", "do_lower_case": bool(normalizer.get("lowercase", False)),
            "strip_accents": normalizer.get("strip_accents"), "tokenize_chinese_chars": True,
            "clean_up_tokenization_spaces": False, "model_max_length": max_length,
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"], **SPECIAL_TOKENS_MAP}


# ---- import ---------------------------------------------------------------------------------------------------

def import_hf(hf_dir: Path, out_dir: Path, overwrite: bool = False) -> dict:
    """Turn a local transformers BERT folder into a tinylm base (or classifier) checkpoint.

    Returns a summary: kind, architecture, out_dir, notes (what was dropped or initialised fresh).
    """
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    started = now()
    data = read_hf_config(hf_dir)
    config = to_bert_config(data, hf_dir / CONFIG_FILE)
    architecture = (data.get("architectures") or ["BertModel"])[0]
    kind = "classifier" if architecture in (CLASSIFIER_ARCHITECTURE, REMOTE_ARCHITECTURE) else "mlm"
    weights = weight_files(hf_dir)  # before the tokenizer: a pickle-only folder is the likeliest failure
    tokenizer, notes = import_tokenizer(hf_dir)
    check_tokenizer(tokenizer, config, hf_dir)
    check_out_dir(out_dir, overwrite)

    state, dropped = read_hf_state(weights)
    if kind == "classifier":
        id2label = read_id2label(data, state, hf_dir)
        pooling = data.get("classifier_pooling", "cls") if architecture == REMOTE_ARCHITECTURE else "cls"
        model = BertForSequenceClassification(config, len(id2label), pooling=pooling)
    else:
        id2label = None
        model = BertForMaskedLM(config)
        state = {k: v for k, v in state.items() if not dropped_for_base(k, dropped)}
        if architecture not in BASE_ARCHITECTURES:
            notes.append(f"{architecture}: the encoder was taken as is")
    expected = {k: v for k, v in model.state_dict().items() if k not in TIED_KEYS}
    check_shapes(state, expected, hf_dir)
    missing = sorted(set(expected) - set(state))
    fresh_head = [k for k in missing if k.startswith("cls.predictions.")]
    if kind == "mlm" and fresh_head:
        notes.append("no MLM head in the checkpoint: cls.predictions was initialised fresh (pretrain or fine-tune "
                     "before relying on masked-token predictions)")
    missing = [k for k in missing if k not in fresh_head]
    if missing:
        raise TinyLMError(f"{hf_dir}: the weights lack {', '.join(missing[:3])}"
                          f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}; config.json "
                          f"({architecture}) needs them")
    model.load_state_dict(state, strict=False)
    if isinstance(model, BertForMaskedLM):
        model.tie_weights()
    if dropped:
        notes.append(f"dropped {', '.join(sorted(dropped))}")
    args = {"stage": "import", "source": str(hf_dir), "architecture": architecture, "notes": notes,
            "tinylm_version": __version__}
    inputs, hashing_s = file_records(sorted(p for p in Path(hf_dir).iterdir() if p.is_file()))
    manifest = build_manifest(kind, inputs, [], args, command_line(), started, hashing_s=hashing_s)
    save_checkpoint(out_dir, model, tokenizer, args, id2label, provenance=manifest)
    return {"kind": kind, "architecture": architecture, "out_dir": str(out_dir), "notes": notes,
            "num_labels": len(id2label) if id2label else None}


def read_hf_config(hf_dir: Path) -> dict:
    if not hf_dir.is_dir():
        raise TinyLMError(f"{hf_dir} does not exist or is not a folder")
    path = hf_dir / CONFIG_FILE
    if not path.is_file():
        raise TinyLMError(f"{hf_dir} has no {CONFIG_FILE}; give a folder written by transformers' save_pretrained")
    return read_json(path)


def to_bert_config(data: dict, path: Path) -> BertConfig:
    """Map HF's config.json onto BertConfig: refuse what changes the math, ignore what does not (use_cache, ...)."""
    if data.get("model_type") not in ("bert", REMOTE_MODEL_TYPE):
        raise TinyLMError(f"{path}: model_type is {data.get('model_type')!r}; tinylm imports BERT models only "
                          "(model_type 'bert')")
    if data.get("model_type") == REMOTE_MODEL_TYPE and data.get("classifier_pooling") not in ("mean", "max"):
        raise TinyLMError(f"{path}: classifier_pooling {data.get('classifier_pooling')!r} is not mean or max")
    for name, allowed, why in UNSUPPORTED:
        if data.get(name) not in allowed:
            raise TinyLMError(f"{path}: {name} = {data[name]!r} is not supported: {why}")
    architectures = data.get("architectures") or []
    if architectures and not str(architectures[0]).startswith(("Bert", REMOTE_ARCHITECTURE)):
        raise TinyLMError(f"{path}: architecture {architectures[0]!r} is not a BERT model")
    values = {f.name: data.get(f.name, HF_DEFAULTS[f.name]) for f in fields(BertConfig)}
    if values["pad_token_id"] is None:
        values["pad_token_id"] = 0
    return from_dict(BertConfig, values, str(path)).validate(str(path))


def weight_files(hf_dir: Path) -> list[Path]:
    """model.safetensors, or the shards its index names. Pickle formats are refused, never opened."""
    if (hf_dir / WEIGHTS_FILE).is_file():
        return [hf_dir / WEIGHTS_FILE]
    if (hf_dir / SHARD_INDEX).is_file():
        weight_map = read_json(hf_dir / SHARD_INDEX, default={}).get("weight_map")
        if not isinstance(weight_map, dict):
            raise TinyLMError(f"{hf_dir / SHARD_INDEX} is not a valid safetensors index")
        shards = [hf_dir / name for name in sorted(set(weight_map.values()))]
        absent = [p.name for p in shards if not p.is_file()]
        if absent:
            raise TinyLMError(f"{hf_dir}: the shard(s) {', '.join(absent[:3])} named in {SHARD_INDEX} are missing")
        return shards
    pickles = [name for name in PICKLE_FILES if (hf_dir / name).is_file()]
    if pickles:
        raise TinyLMError(
            f"{hf_dir} has only {pickles[0]}, no {WEIGHTS_FILE}: tinylm does not load pickle checkpoints, because "
            "unpickling can run arbitrary code. In an environment you trust, convert it with `python -c \"from "
            "transformers import AutoModel; AutoModel.from_pretrained('DIR').save_pretrained('DIR', "
            "safe_serialization=True)\"` (use the model's own class, e.g. AutoModelForMaskedLM, to keep its head)")
    raise TinyLMError(f"{hf_dir} has no {WEIGHTS_FILE}")


def read_hf_state(paths: list[Path]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Every tensor under tinylm's name, as float32; returns (state, names of the parts dropped)."""
    state, dropped = {}, set()
    for path in paths:
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    key = tinylm_key(name)
                    if key is None:
                        dropped.add(name.rsplit(".", 1)[-1])
                    else:
                        state[key] = f.get_tensor(name)
        except (SafetensorError, OSError, ValueError) as e:
            raise TinyLMError(f"{path} is corrupt or not a safetensors file ({str(e)[:120]})") from None
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise TinyLMError(f"{paths[0].parent}: {key} has dtype {tensor.dtype}; expected floating-point weights")
        state[key] = tensor.float()  # tinylm trains and stores float32; bf16/fp16 upcast exactly
    untie_decoder(state, paths[0].parent)
    return state, dropped


def tinylm_key(name: str) -> str | None:
    """HF's key -> ours: add the bert. prefix of a bare BertModel, rename TF-era gamma/beta, drop buffers."""
    if name.endswith((".position_ids", ".token_type_ids")):
        return None  # index buffers, recomputed on the fly
    if name.startswith(("embeddings.", "encoder.", "pooler.")):
        name = "bert." + name
    parts = name.split(".")
    if parts[-1] in ("gamma", "beta") and "LayerNorm" in parts:
        parts[-1] = {"gamma": "weight", "beta": "bias"}[parts[-1]]
    return ".".join(parts)


def untie_decoder(state: dict[str, torch.Tensor], hf_dir: Path):
    """Older transformers store the tied MLM decoder too; tinylm ties it, so it must equal what it is tied to."""
    weight = state.pop("cls.predictions.decoder.weight", None)
    embeddings = state.get("bert.embeddings.word_embeddings.weight")
    if weight is not None and embeddings is not None and not torch.equal(weight, embeddings):
        raise TinyLMError(f"{hf_dir}: the MLM decoder is not tied to the word embeddings (tie_word_embeddings "
                          "false); tinylm's BertForMaskedLM always ties them")
    bias = state.pop("cls.predictions.decoder.bias", None)
    if bias is not None:
        state.setdefault("cls.predictions.bias", bias)


def dropped_for_base(key: str, dropped: set[str]) -> bool:
    """A base checkpoint keeps the encoder and the MLM head; NSP, pooler and task heads go (and are named)."""
    if key.startswith("bert.pooler."):
        dropped.add("bert.pooler (tinylm's MLM model has none; fine-tuning with --pooling cls starts a fresh one)")
        return True
    if key.startswith("bert.") or key.startswith("cls.predictions."):
        return False
    dropped.add("the next-sentence head cls.seq_relationship" if key.startswith("cls.seq_relationship.")
                else f"the task head {key.rsplit('.', 1)[0]}")
    return True


def read_id2label(data: dict, state: dict[str, torch.Tensor], hf_dir: Path) -> dict[int, str]:
    """id2label from config.json, or LABEL_i names for as many classes as the classifier has rows."""
    if "classifier.weight" not in state:
        raise TinyLMError(f"{hf_dir}: a BertForSequenceClassification checkpoint without classifier.weight")
    rows = state["classifier.weight"].shape[0]
    raw = data.get("id2label") or {str(i): f"LABEL_{i}" for i in range(rows)}
    try:
        id2label = {int(i): str(label) for i, label in raw.items()}
    except (ValueError, AttributeError):
        raise TinyLMError(f"{hf_dir / CONFIG_FILE}: id2label must map integer ids to labels") from None
    if sorted(id2label) != list(range(rows)):
        raise TinyLMError(f"{hf_dir / CONFIG_FILE}: id2label has ids {sorted(id2label)[:5]} but classifier.weight "
                          f"has {rows} rows")
    return id2label


def check_shapes(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], hf_dir: Path):
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise TinyLMError(f"{hf_dir}: unexpected tensor(s) {', '.join(unexpected[:3])} for a BERT of this config")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise TinyLMError(f"{hf_dir}: {key} has shape {tuple(tensor.shape)}, but config.json implies "
                              f"{tuple(expected[key].shape)}")


# ---- tokenizer ------------------------------------------------------------------------------------------------

def import_tokenizer(hf_dir: Path) -> tuple[Tokenizer, list[str]]:
    """tokenizer.json as is, or a BERT WordPiece tokenizer rebuilt from vocab.txt (what BertTokenizer does)."""
    notes = []
    path = hf_dir / TOKENIZER_FILE
    if path.is_file():
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the Rust side raises a bare Exception on malformed JSON
            raise TinyLMError(f"{path} is not a valid tokenizer file ({str(e).splitlines()[0][:120]})") from None
    elif (hf_dir / VOCAB_FILE).is_file():
        tokenizer = tokenizer_from_vocab(hf_dir)
        notes.append(f"tokenizer built from {VOCAB_FILE} with BERT's WordPiece settings")
    else:
        raise TinyLMError(f"{hf_dir} has no tokenizer: {TOKENIZER_FILE} (or a BERT {VOCAB_FILE}) is missing; "
                          "save the tokenizer next to the model with tokenizer.save_pretrained(DIR)")
    if tokenizer.post_processor is None and tokenizer.token_to_id(CLS) is not None and tokenizer.token_to_id(SEP) is not None:
        tokenizer.post_processor = bert_template(tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP))
        notes.append("the tokenizer had no post-processor: [CLS] text [SEP] added, as BERT expects")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer, notes


def tokenizer_from_vocab(hf_dir: Path) -> Tokenizer:
    lines = (hf_dir / VOCAB_FILE).read_text(encoding="utf-8").splitlines()
    vocab = {token: i for i, token in enumerate(lines)}
    settings = {}
    if (hf_dir / "tokenizer_config.json").is_file():
        settings = read_json(hf_dir / "tokenizer_config.json")
    lowercase = bool(settings.get("do_lower_case", True))
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix="##",
                                           max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)),
        strip_accents=settings.get("strip_accents"), lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    if CLS in vocab and SEP in vocab:
        tokenizer.post_processor = bert_template(vocab[CLS], vocab[SEP])
    return tokenizer


def bert_template(cls_id: int, sep_id: int):
    return processors.TemplateProcessing(single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
                                         special_tokens=[(CLS, cls_id), (SEP, sep_id)])


def check_tokenizer(tokenizer: Tokenizer, config: BertConfig, hf_dir: Path):
    """tinylm looks the special tokens up by name, so they must exist; their ids may be anything."""
    missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
    if missing:
        raise TinyLMError(f"the tokenizer in {hf_dir} lacks the special token(s) {', '.join(missing)}; "
                          "tinylm needs BERT's [PAD] [UNK] [CLS] [SEP] [MASK]")
    if tokenizer.get_vocab_size() != config.vocab_size:
        raise TinyLMError(f"the tokenizer in {hf_dir} has {tokenizer.get_vocab_size()} tokens but config.json says "
                          f"vocab_size {config.vocab_size}; tinylm needs the two to match")
    if tokenizer.token_to_id(PAD) != config.pad_token_id:
        raise TinyLMError(f"{hf_dir}: config.json pad_token_id {config.pad_token_id} is not the tokenizer's "
                          f"[PAD] id {tokenizer.token_to_id(PAD)}")

"""WordPiece tokenizer in the BERT style, trained with Hugging Face `tokenizers`.

Digits are split one per token. Invoices are dense with amounts, dates, invoice numbers and IBANs; left whole,
every distinct number would compete for a vocabulary slot and most would still end up as [UNK] or rare
pieces at test time. One token per digit keeps the vocabulary for words, makes every number representable,
and lets the model learn digit patterns (dates, amounts, check digits) position by position. The price is
longer sequences for number-heavy text, which packing and the sequence length absorb.

Accents are kept (strip_accents=False) even when lower-casing: in German "Müller" and "Muller", or "zählen"
and "zahlen", are different words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from tinylm.errors import TinyLMError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]  # ids 0..4, [PAD] = 0 = BertConfig.pad_token_id
TOKENIZER_FILE = "tokenizer.json"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = True,
                    min_frequency: int = 2, length: int | None = None, extra_special: list[str] = ()) -> Tokenizer:
    """extra_special (the PII placeholders) become single tokens after ours, never split nor learned from."""
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise TinyLMError(f"--vocab-size must be at least {len(SPECIAL_TOKENS) + 1}, got {vocab_size}")
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix="##", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[*SPECIAL_TOKENS, *extra_special],
        continuing_subword_prefix="##", show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1", special_tokens=[(CLS, cls_id), (SEP, sep_id)]
    )
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: Path) -> Path:
    path = Path(directory) / TOKENIZER_FILE
    tokenizer.save(str(path))
    return path


def load_tokenizer(directory: Path) -> Tokenizer:
    """Load DIR/tokenizer.json (or a tokenizer.json path) and check it has BERT's special tokens."""
    directory = Path(directory)
    path = directory / TOKENIZER_FILE if directory.is_dir() else directory
    if not path.is_file():
        raise TinyLMError(f"no tokenizer at {path}: train one with `tinylm tokenize DATA --out DIR` and pass DIR")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises a bare Exception on malformed JSON
        raise TinyLMError(f"{path} is not a valid tokenizer file ({str(e).splitlines()[0][:120]})") from None
    missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
    if missing:
        raise TinyLMError(f"tokenizer {path} lacks the special token(s) {', '.join(missing)}; "
                          "train it with `tinylm tokenize`")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def special_ids(tokenizer: Tokenizer) -> dict[str, int]:
    return {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}

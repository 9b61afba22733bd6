"""WordPiece tokenizer in the BERT style, trained with Hugging Face `tokenizers`.

Digits are split one per token. Invoices are dense with amounts, dates, invoice numbers and IBANs; left whole,
every distinct number would compete for a vocabulary slot and most would still end up as [UNK] or rare
pieces at test time. One token per digit keeps the vocabulary for words, makes every number representable,
and lets the model learn digit patterns (dates, amounts, check digits) position by position. The price is
longer sequences for number-heavy text, which packing and the sequence length absorb.

Accents are kept (strip_accents=False) even when lower-casing: in German "Müller" and "Muller", or "zählen"
and "zahlen", are different words.

The vocabulary is learnt here, not by `tokenizers`' WordPieceTrainer, which gives a different vocabulary on every
run: it numbers the word-continuing pieces ("##x") in hash-map order and breaks ties between equally frequent
pairs by those numbers (huggingface/tokenizers#1794), so everything trained after it differed from run to run.
The algorithm is the trainer's own (WordPiece vocabularies are learnt by BPE merges, as in `tokenizers`), with
every piece numbered in a fixed order, so the same text and options give the same tokenizer.json byte for byte.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from tinylm.errors import TinyLMError
from tinylm.files import TOKENIZER_FILE

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP, MASK]  # ids 0..4, [PAD] = 0 = BertConfig.pad_token_id
PREFIX = "##"  # marks a piece that continues a word


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, lowercase: bool = True,
                    min_frequency: int = 2, extra_special: list[str] = ()) -> Tokenizer:
    """extra_special (the PII placeholders) become single tokens after ours, never split nor learned from."""
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise TinyLMError(f"--vocab-size must be at least {len(SPECIAL_TOKENS) + 1}, got {vocab_size}")
    tokenizer = untrained_tokenizer(lowercase)
    specials = [*SPECIAL_TOKENS, *extra_special]
    pieces = learn_pieces(count_words(tokenizer, texts), vocab_size, min_frequency, specials)
    tokenizer.model = wordpiece({p: i for i, p in enumerate(pieces)})
    tokenizer.add_special_tokens(specials)
    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1", special_tokens=[(CLS, cls_id), (SEP, sep_id)]
    )
    return tokenizer


def wordpiece(vocab: dict[str, int] | None = None) -> models.WordPiece:
    return models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=PREFIX, max_input_chars_per_word=100)


def untrained_tokenizer(lowercase: bool = True) -> Tokenizer:
    """tinylm's tokenizer before it has a vocabulary: BERT's normaliser (accents kept) and pre-tokeniser, digits
    one per token, a WordPiece model and decoder."""
    tokenizer = Tokenizer(wordpiece())
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=lowercase
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.decoder = decoders.WordPiece(prefix=PREFIX)
    return tokenizer


def count_words(tokenizer: Tokenizer, texts: Iterable[str]) -> Counter:
    """Each word's count, words cut as the tokenizer will cut them (its normaliser and pre-tokeniser)."""
    normalize, pre_tokenize = tokenizer.normalizer.normalize_str, tokenizer.pre_tokenizer.pre_tokenize_str
    counts = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenize(normalize(text)))
    return counts


def learn_pieces(word_counts: dict[str, int], vocab_size: int, min_frequency: int, specials: list[str]) -> list[str]:
    """The WordPiece vocabulary, id by id: the special tokens, every character seen (alone and as "##c"), then
    the most frequent adjacent pair of pieces merged into one, again and again, until vocab_size pieces or no pair
    seen min_frequency times. Ties go to the pair whose pieces have the smaller ids, as in `tokenizers`; here the
    characters are numbered by code point, so the result does not depend on hashing."""
    pieces, ids = [], {}

    def piece_id(piece: str) -> int:
        if piece not in ids:
            ids[piece] = len(pieces)
            pieces.append(piece)
        return ids[piece]

    for piece in specials:
        piece_id(piece)
    for char in sorted({c for word in word_counts for c in word}):
        piece_id(char)
    for char in sorted({c for word in word_counts for c in word[1:]}):
        piece_id(PREFIX + char)
    words = [[ids[w[0]], *(ids[PREFIX + c] for c in w[1:])] for w in word_counts]
    counts = list(word_counts.values())

    pair_counts, where = defaultdict(int), defaultdict(set)
    for i, (word, n) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += n
            where[pair].add(i)
    heap = [(-n, a, b) for (a, b), n in pair_counts.items()]
    heapq.heapify(heap)
    while heap and len(pieces) < vocab_size:
        n, a, b = heapq.heappop(heap)
        current = pair_counts.get((a, b), 0)
        if -n != current:  # counts only fall while an entry waits; rises push a fresh entry
            if current > 0:
                heapq.heappush(heap, (-current, a, b))
            continue
        if current < max(min_frequency, 1):
            break
        right = pieces[b]
        merged = piece_id(pieces[a] + (right[len(PREFIX):] if right.startswith(PREFIX) else right))
        formed = set()
        for i in where.pop((a, b)):
            word, n = words[i], counts[i]
            new = merge_pair(word, a, b, merged)
            if len(new) == len(word):
                continue  # merged away by an earlier pair since it was recorded here
            for pair in zip(word, word[1:]):
                pair_counts[pair] -= n
            for pair in zip(new, new[1:]):
                pair_counts[pair] += n
                if merged in pair:
                    where[pair].add(i)
                    formed.add(pair)
            words[i] = new
        pair_counts.pop((a, b), None)
        for pair in formed:  # the heap orders entries completely, so the order they go in does not matter
            heapq.heappush(heap, (-pair_counts[pair], *pair))
    return pieces


def merge_pair(word: list[int], a: int, b: int, merged: int) -> list[int]:
    """The word with each pair (a, b) replaced by `merged`, left to right, non-overlapping: "aaa" with (a, a) ->
    "aa a"."""
    new, j = [], 0
    while j < len(word):
        if j + 1 < len(word) and word[j] == a and word[j + 1] == b:
            new.append(merged)
            j += 2
        else:
            new.append(word[j])
            j += 1
    return new


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

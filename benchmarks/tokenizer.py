"""tinylm's WordPiece trainer against tokenizers' WordPieceTrainer: the same pieces up to ties, and the time taken.

    python benchmarks/tokenizer.py                                   # the bundled corpus, SST-2 and AG News train
    python benchmarks/tokenizer.py --data FILE.csv --vocab-size 16000

For each corpus: tinylm's `train_tokenizer` once and tokenizers' trainer twice with the same normaliser,
pre-tokeniser and options. Printed: seconds for each, the pieces in one vocabulary and not in the other (tinylm
against tokenizers, and tokenizers against itself: its run-to-run difference), and how many of the first 2,000
documents the two encode to the same pieces.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tokenizers import Tokenizer, trainers

from tinylm.data import read_texts
from tinylm.tokenizer import PREFIX, SPECIAL_TOKENS, train_tokenizer, untrained_tokenizer

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "datasets"
DEFAULT_DATA = [ROOT / "data" / "corpus.jsonl", SHARED / "sst2" / "train.csv", SHARED / "agnews" / "train.csv"]


def tokenizers_trainer(texts: list[str], vocab_size: int) -> Tokenizer:
    """What tinylm did before: tokenizers' own trainer, on tinylm's tokenizer before it has a vocabulary."""
    tokenizer = untrained_tokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                        continuing_subword_prefix=PREFIX, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, nargs="+", default=[p for p in DEFAULT_DATA if p.exists()])
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args()
    print(f"{'corpus':<28} {'docs':>7} {'pieces':>7} {'tinylm s':>9} {'tokenizers s':>13} {'ratio':>6} "
          f"{'differ':>7} {'tokenizers vs itself':>21} {'same encoding':>14}")
    for path in args.data:
        texts = read_texts(path)
        ours, t_ours = timed(train_tokenizer, texts, args.vocab_size)
        theirs, t_theirs = timed(tokenizers_trainer, texts, args.vocab_size)
        again = tokenizers_trainer(texts, args.vocab_size)
        a, b, c = set(ours.get_vocab()), set(theirs.get_vocab()), set(again.get_vocab())
        sample = texts[:2000]
        same = sum(x.tokens == y.tokens for x, y in zip(ours.encode_batch(sample, add_special_tokens=False),
                                                         theirs.encode_batch(sample, add_special_tokens=False)))
        name = f"{path.parent.name}/{path.name}"
        print(f"{name:<28} {len(texts):>7,} {len(a):>7,} {t_ours:>9.2f} {t_theirs:>13.2f} {t_ours / t_theirs:>5.1f}x "
              f"{len(a - b):>7} {len(b - c):>21} {same:>8} / {len(sample):,}")


if __name__ == "__main__":
    main()

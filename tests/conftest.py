import os
from pathlib import Path

import pytest
import torch

from tinylm.config import BertConfig

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SHARED = ROOT.parent / "shared" / "datasets"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def token_cache(tmp_path_factory):
    """Encoded corpora go to a temporary cache, never to the user's ~/.cache."""
    os.environ["TINYLM_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return Path(os.environ["TINYLM_CACHE"])


def tiny_config(**overrides) -> BertConfig:
    values = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                  max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    values.update(overrides)
    return BertConfig(**values)


@pytest.fixture
def padded_batch():
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 97, (3, 17), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 11:] = 0
    attention_mask[2, 5:] = 0
    input_ids[attention_mask == 0] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[0, 9:] = 1
    return input_ids, attention_mask, token_type_ids


def write_labelled_csv(path: Path, n: int = 90, seed: int = 0) -> Path:
    """A small three-class invoice-like set, generated so the tests do not depend on data/."""
    import csv
    import random

    rng = random.Random(seed)
    words = {
        "travel": ["flight", "hotel", "taxi", "train", "boarding", "Reise", "Hotelzimmer"],
        "software": ["licence", "subscription", "cloud", "seats", "renewal", "Lizenz", "Wartung"],
        "office": ["paper", "toner", "pens", "folders", "stapler", "Papier", "Ordner"],
    }
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(n):
            label = list(words)[i % 3]
            items = " ".join(rng.choice(words[label]) for _ in range(6))
            writer.writerow([f"Invoice INV-{rng.randint(1000, 9999)} dated 2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}: "
                             f"{items}, total {rng.randint(10, 999)}.{rng.randint(10, 99)} EUR", label])
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tokenizer, a base checkpoint and a classifier, trained for a few steps through the library."""
    from tinylm.config import FinetuneConfig, PRESETS, PretrainConfig, RunOptions
    from tinylm.data import read_texts
    from tinylm.finetune import finetune
    from tinylm.pretrain import pretrain
    from tinylm.tokenizer import save_tokenizer, train_tokenizer

    root = tmp_path_factory.mktemp("trained")
    data = write_labelled_csv(root / "train.csv")
    (root / "tokenizer").mkdir()
    save_tokenizer(train_tokenizer(read_texts(data), vocab_size=300), root / "tokenizer")
    from dataclasses import replace

    model = replace(PRESETS["tiny"].model)
    pretrain([data], root / "tokenizer", root / "base", model, PretrainConfig.of(max_steps=8, batch_size=8, seq_len=32),
             RunOptions(quiet=True))
    finetune(data, root / "base", root / "classifier", FinetuneConfig.of(epochs=1, batch_size=8, seq_len=32),
             run=RunOptions(quiet=True))
    return root

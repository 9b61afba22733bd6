import math

import numpy as np
import torch

from conftest import tiny_config
from tinylm.masking import mask_tokens
from tinylm.model import BertForMaskedLM
from tinylm.pretrain import cooccurrence_embeddings, unigram_log_prior


def test_masking_is_15_percent_and_80_10_10_over_many_draws():
    vocab, mask_id = 1000, 4
    input_ids = torch.randint(5, vocab, (400, 128), generator=torch.Generator().manual_seed(0))
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True  # [CLS] ... [SEP]
    special[:50, 100:] = True  # padding
    inputs, labels = mask_tokens(input_ids, special, mask_id, vocab, 0.15, torch.Generator().manual_seed(1),
                                 first_regular_id=5)
    selected = labels != -100
    assert not selected[special].any(), "special tokens and padding are never selected"
    rate = selected.sum().item() / (~special).sum().item()
    assert abs(rate - 0.15) < 0.005
    n = selected.sum().item()
    masked = (inputs == mask_id) & selected
    unchanged = (inputs == input_ids) & selected
    random = selected & ~masked & ~unchanged
    assert abs(masked.sum().item() / n - 0.8) < 0.01
    # a random replacement can hit the original token (1 in ~1000), which counts as unchanged
    assert abs(unchanged.sum().item() / n - 0.1) < 0.01
    assert abs(random.sum().item() / n - 0.1) < 0.01
    assert (labels[selected] == input_ids[selected]).all()
    assert (inputs[~selected] == input_ids[~selected]).all()
    assert inputs[random].min() >= 5, "random replacements are regular tokens"


def test_masking_is_dynamic_and_seeded():
    ids = torch.randint(5, 100, (8, 64), generator=torch.Generator().manual_seed(0))
    special = torch.zeros_like(ids, dtype=torch.bool)
    g = torch.Generator().manual_seed(7)
    first, second = mask_tokens(ids, special, 4, 100, generator=g), mask_tokens(ids, special, 4, 100, generator=g)
    assert not torch.equal(first[1], second[1]), "each draw masks different positions"
    again = mask_tokens(ids, special, 4, 100, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_the_mlm_decoder_starts_at_the_unigram_prior():
    """A fresh model's MLM loss is the corpus's unigram entropy, not ln V: the first steps need not learn
    word frequencies."""
    rng = np.random.default_rng(0)
    frequencies = 1.0 / np.arange(1, 93) ** 1.1  # Zipf-like over the 92 regular ids 5..96
    stream = rng.choice(np.arange(5, 97), size=20_000, p=frequencies / frequencies.sum()).astype(np.uint16)
    stream[::17] = 3  # [SEP] between documents: never a target
    specials = [0, 1, 2, 3, 4]

    def smoothed_frequencies(tokens):  # add-half; the specials count 0
        counts = np.bincount(tokens, minlength=97).astype(np.float64)
        counts[specials] = 0
        return (counts + 0.5) / (counts + 0.5).sum()

    prior = unigram_log_prior(stream, 97, never_predicted=specials)
    assert np.allclose(torch.softmax(prior.double(), 0).numpy(), smoothed_frequencies(stream), rtol=1e-5)
    big = np.tile(stream, 250)  # 5M tokens: counted in more than one chunk
    assert np.allclose(torch.softmax(unigram_log_prior(big, 97, specials).double(), 0).numpy(),
                       smoothed_frequencies(big), rtol=1e-5)
    assert prior[:5].max() <= prior[5:].min()  # never predicted: the floor
    regular = stream[stream != 3].astype(np.int64)
    counts = np.bincount(regular, minlength=97)

    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config())
    targets = torch.from_numpy(regular[:4000]).view(100, 40)
    uniform, _ = model(targets, labels=targets)
    with torch.no_grad():
        model.cls.predictions.bias.copy_(prior)
    started, _ = model(targets, labels=targets)
    q = counts[5:] / counts[5:].sum()
    entropy = -(q * np.log(q)).sum()
    assert abs(uniform.item() - math.log(97)) < 0.1
    assert abs(started.item() - entropy) < 0.1, (started.item(), entropy)


def test_cooccurrence_embeddings_place_words_used_alike_together():
    rng = np.random.default_rng(0)
    animals, fruits = np.arange(10, 20), np.arange(30, 40)
    sentences = []  # "the <animal> sat" and "we eat <fruit>", in random order, [SEP] (3) between them
    for _ in range(4000):
        sentences.append([5, rng.choice(animals), 6, 3] if rng.random() < 0.5 else [7, 8, rng.choice(fruits), 3])
    stream = np.concatenate(sentences).astype(np.uint16)
    torch.manual_seed(0)
    initial = torch.randn(97, 16) * 0.02
    specials = [0, 1, 2, 3, 4]
    vectors = cooccurrence_embeddings(stream, initial, specials)
    unit = torch.nn.functional.normalize(vectors, dim=1)

    def mean_cosine(a, b):
        return (unit[a] @ unit[b].T).mean().item()

    within = (mean_cosine(animals, animals) + mean_cosine(fruits, fruits)) / 2
    assert within > 0.9 and mean_cosine(animals, fruits) < 0.2
    unseen = [i for i in range(97) if i not in set(stream.tolist())]
    assert torch.equal(vectors[specials], initial[specials]) and torch.equal(vectors[unseen], initial[unseen])
    seen = sorted(set(stream.tolist()) - set(specials))
    assert abs(vectors[seen].std().item() - initial.std().item()) < 0.005  # the initialiser's scale
    assert torch.equal(cooccurrence_embeddings(stream[:1], initial, specials), initial)  # nothing to count

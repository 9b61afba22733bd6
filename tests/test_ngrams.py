"""The n-gram teacher of self-training: TF-IDF + logistic regression, the same numbers as scikit-learn's (the
quality benchmark's baseline), and the calibrated pooling of two teachers."""

import csv
from pathlib import Path

import numpy as np
import pytest

from tinylm.ngrams import NgramClassifier, TfidfFeatures, char_ngrams, fit_temperature, pooled, word_ngrams
from tinylm.self_training import pool_teachers

DATA = Path(__file__).resolve().parent.parent / "data"


def invoices(n: int, skip: int = 0) -> tuple[list[str], list[int], list[str]]:
    """n of the bundled invoices (real multi-line, multi-language documents), their targets and the label names."""
    with open(DATA / "train.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = sorted({r["label"] for r in rows})
    rows = rows[skip:skip + n]
    return [r["text"] for r in rows], [labels.index(r["label"]) for r in rows], labels


def test_the_views_are_word_1_2_grams_and_character_2_5_grams_within_words():
    assert word_ngrams("Total: 12 EUR, a b") == ["total", "12", "eur", "total 12", "12 eur"]
    assert char_ngrams("Ab c") == [" a", "ab", "b ", " ab", "ab ", " ab ", " c", "c ", " c "]


def test_features_and_probabilities_are_scikit_learns():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_union

    texts, targets, labels = invoices(60)
    test, _, _ = invoices(30, skip=60)
    reference = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                           TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)).fit(texts)
    ours = TfidfFeatures().fit(texts)
    assert ours.width == reference.transform(texts[:1]).shape[1]
    np.testing.assert_allclose(ours.transform(test).to_dense().numpy(), reference.transform(test).toarray(),
                               atol=1e-12)
    model = NgramClassifier(C=10).fit(texts, targets, len(labels))
    lr = LogisticRegression(C=10, max_iter=2000, tol=1e-8).fit(reference.transform(texts), targets)
    np.testing.assert_allclose(model.predict_proba(test), lr.predict_proba(reference.transform(test)), atol=2e-3)
    assert sklearn.__version__


def test_it_learns_and_is_the_same_every_time():
    texts, targets, labels = invoices(90)
    test, truth, _ = invoices(200, skip=1000)
    first = NgramClassifier().fit(texts, targets, len(labels)).predict_proba(test)
    assert (first.argmax(-1) == np.array(truth)).mean() > 2 / len(labels)  # 0.45 with 11 labels a class; 8 classes
    assert np.array_equal(first, NgramClassifier().fit(texts, targets, len(labels)).predict_proba(test))


def test_an_overconfident_teacher_is_cooled_and_a_good_one_leads_the_pool():
    truth = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    sure_and_wrong_half = np.full((8, 3), 0.005)
    sure_and_wrong_half[np.arange(8), np.where(np.arange(8) % 2, (truth + 1) % 3, truth)] = 0.99
    modest_and_right = np.full((8, 3), 0.25)
    modest_and_right[np.arange(8), truth] = 0.5
    assert fit_temperature(sure_and_wrong_half, truth) > 1 > fit_temperature(modest_and_right, truth)
    pool, val, record = pool_teachers({"transformer": (sure_and_wrong_half, sure_and_wrong_half),
                                       "ngrams": (modest_and_right, modest_and_right)}, truth)
    assert (val.argmax(-1) == truth).all() and np.allclose(pool.sum(-1), 1)
    assert record["transformer"]["val_accuracy"] == 0.5 and record["ngrams"]["val_accuracy"] == 1.0
    assert record["transformer"]["temperature"] > 1 > record["ngrams"]["temperature"]
    # one teacher is taken as it is, uncalibrated
    alone, _, record = pool_teachers({"transformer": (sure_and_wrong_half, sure_and_wrong_half)}, truth)
    assert alone is sure_and_wrong_half and "temperature" not in record["transformer"]
    # pooling two copies of one view at T=1 sharpens it the way a product of experts does
    np.testing.assert_allclose(pooled([modest_and_right] * 2, [1.0, 1.0])[0], [0.5 ** 2 / (0.25 + 2 * 0.0625)] + [
        0.0625 / 0.375] * 2)

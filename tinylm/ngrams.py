"""A bag-of-n-grams classifier: TF-IDF of word 1-2-grams and of character 2-5-grams within words, and a multinomial
logistic regression on them (the linear baseline of text classification that the quality benchmark compares with,
scikit-learn's TfidfVectorizer x 2 + LogisticRegression(C=10), here in torch so that tinylm needs nothing more).

Self-training uses it as a second view of the documents (co-training's two views, Blum & Mitchell 1998): with few
labels it is often the better judge of short documents, and it errs where the transformer does not, so the two
together choose better pseudo-labels than either alone. It never becomes the classifier a user gets.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


def word_ngrams(text: str) -> list[str]:
    tokens = WORD.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def char_ngrams(text: str, low: int = 2, high: int = 5) -> list[str]:
    """Character n-grams of each word padded with a space (scikit-learn's char_wb): a word shorter than n gives
    itself once and no longer n-grams."""
    grams = []
    for word in text.lower().split():
        word = f" {word} "
        for n in range(low, high + 1):
            if len(word) <= n:
                grams.append(word)
                break
            grams.extend(word[i:i + n] for i in range(len(word) - n + 1))
    return grams


VIEWS = (word_ngrams, char_ngrams)


class TfidfFeatures:
    """Sublinear TF (1 + log count) x smoothed IDF, L2-normalised per view, the views side by side; the vocabulary
    is what the fitted documents contain (an n-gram no labelled document has would get no weight anyway)."""

    def fit(self, texts: list[str]) -> "TfidfFeatures":
        self.vocabularies, self.idf = [], []
        for view in VIEWS:
            df = Counter(gram for text in texts for gram in set(view(text)))
            vocabulary = {gram: i for i, gram in enumerate(sorted(df))}  # sorted: the same columns in every run
            self.vocabularies.append(vocabulary)
            self.idf.append(np.array([math.log((1 + len(texts)) / (1 + df[g])) + 1 for g in vocabulary]))
        return self

    @property
    def width(self) -> int:
        return sum(len(v) for v in self.vocabularies)

    def transform(self, texts: list[str]) -> torch.Tensor:
        """A sparse CSR matrix (documents x n-grams), float64."""
        crow, col, val = [0], [], []
        for text in texts:
            offset = 0
            for view, vocabulary, idf in zip(VIEWS, self.vocabularies, self.idf):
                counts = Counter(vocabulary[g] for g in view(text) if g in vocabulary)
                columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
                weights = (1 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * idf[columns]
                norm = np.linalg.norm(weights)
                col.append(columns + offset)
                val.append(weights / norm if norm else weights)
                offset += len(vocabulary)
            crow.append(crow[-1] + sum(len(c) for c in col[-len(VIEWS):]))
        col = np.concatenate(col) if col else np.empty(0, np.int64)
        val = np.concatenate(val) if val else np.empty(0)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": what is used here is plain and tested
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(torch.tensor(crow), torch.from_numpy(col), torch.from_numpy(val),
                                           size=(len(texts), self.width), check_invariants=False)


class NgramClassifier:
    """Multinomial logistic regression on TfidfFeatures, L2-penalised like scikit-learn's (C x the summed cross-
    entropy + half the squared weights; the bias is not penalised), solved to convergence with L-BFGS."""

    def __init__(self, C: float = 10.0, max_iter: int = 500):
        self.C, self.max_iter = C, max_iter

    def fit(self, texts: list[str], targets, num_labels: int) -> "NgramClassifier":
        self.features = TfidfFeatures().fit(texts)
        x = self.features.transform(texts)
        xt = x.t().to_sparse_csr()  # for the gradient, by hand: autograd through a sparse product is slow
        onehot = F.one_hot(torch.as_tensor(np.asarray(targets), dtype=torch.long), num_labels).double()
        self.weight = torch.zeros(self.features.width, num_labels, dtype=torch.float64)
        self.bias = torch.zeros(num_labels, dtype=torch.float64)
        solver = torch.optim.LBFGS([self.weight, self.bias], max_iter=self.max_iter, tolerance_grad=1e-7,
                                   tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")
        scale = 1 / (self.C * len(texts))  # the objective over C x documents: the same minimum, numbers near 1

        def objective():
            logp = self.logits(x).log_softmax(-1)
            residual = (logp.exp() - onehot) / len(texts)
            self.weight.grad = torch.sparse.mm(xt, residual) + scale * self.weight
            self.bias.grad = residual.sum(0)
            return -(logp * onehot).sum() / len(texts) + scale * (self.weight ** 2).sum() / 2

        solver.step(objective)
        return self

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sparse.mm(x, self.weight) + self.bias

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            return self.logits(self.features.transform(texts)).softmax(-1).numpy()


TEMPERATURES = np.geomspace(0.25, 16, 25)


def fit_temperature(probs: np.ndarray, targets: np.ndarray) -> float:
    """Temperature scaling (Guo et al., ICML 2017): the T that gives the validation documents the most likely
    labels under softmax(log p / T), from a fixed grid (a fine-tuned transformer is overconfident, a regularised
    linear model the other way; with a handful of validation documents a grid is as good as a solver and exact)."""
    logp = np.log(np.clip(probs, 1e-12, None))
    rows = np.arange(len(targets))

    def nll(t):
        z = logp / t
        z = z - z.max(-1, keepdims=True)
        return -(z[rows, targets] - np.log(np.exp(z).sum(-1))).mean()

    return float(min(TEMPERATURES, key=nll))


def pooled(views: list[np.ndarray], temperatures: list[float]) -> np.ndarray:
    """Log-linear pooling (a product of the calibrated experts): each view's log-probabilities over its temperature,
    summed, renormalised."""
    z = sum(np.log(np.clip(p, 1e-12, None)) / t for p, t in zip(views, temperatures))
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)

"""Probe: how right would self-training's pseudo-labels be from the transformer alone, the n-gram classifier alone,
or the two pooled? On a pool whose true labels are known (a labelled train file read as unlabelled).

    python experiments/pseudo_label_views.py CLASSIFIER LABELLED.csv POOL.csv [DEV.csv]

CLASSIFIER is a `tinylm finetune` run on LABELLED.csv (the benchmark's WORKDIR/DATASET/clf-tinylm and labelled.csv);
POOL.csv is the train file it was sampled from. For each teacher it prints the accuracy of its most confident 25%,
50% and 100% of the pool (what rounds 1 and 2 keep) and on DEV.csv if given. The temperatures are fitted on the
classifier's own validation documents, as `finetune --unlabelled` does. Then round 2's co-training: the n-gram
classifier refitted on the training documents and the pooled teachers' most confident half of the pool (round 1's
pseudo-labels, chosen as `finetune --unlabelled` chooses them), alone and pooled with the transformer; then
`--ngram-cross-fit`'s n-gram teacher (every labelled document, validation included), alone and pooled. Uses only
tinylm's public functions.
"""

import json
import sys
from pathlib import Path

import numpy as np

from tinylm.checkpoint import load_checkpoint
from tinylm.config import FinetuneConfig
from tinylm.data import read_records
from tinylm.evaluate import predict_proba
from tinylm.finetune import stratified_split
from tinylm.ngrams import NgramClassifier, fit_temperature, pooled
from tinylm.self_training import select_pseudo_labels


def read(path: Path) -> tuple[list[str], list[str]]:
    records = read_records(path, label_column="label")
    return [r.text for r in records], [r.label for r in records]


def top(probs: np.ndarray, truth: np.ndarray, share: float) -> float:
    order = np.argsort(-probs.max(-1), kind="stable")[:int(share * len(probs))]
    return float((probs.argmax(-1)[order] == truth[order]).mean())


def main(classifier: str, labelled: str, pool_file: str, dev: str | None = None):
    model, tokenizer, _ = load_checkpoint(classifier, expect_kind="classifier")
    config = json.loads((Path(classifier) / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(config["num_labels"])]
    texts, names = read(Path(labelled))
    train_rows, val_rows = stratified_split(names, FinetuneConfig().val_fraction, FinetuneConfig().train.seed)
    targets = np.array([labels.index(n) for n in names])
    known = set(texts)
    pool = [(t, n) for t, n in zip(*read(Path(pool_file))) if t not in known]
    sets = {"pool": ([t for t, _ in pool], np.array([labels.index(n) for _, n in pool]))}
    if dev:
        dev_texts, dev_names = read(Path(dev))
        sets["dev"] = (dev_texts, np.array([labels.index(n) for n in dev_names]))
    ngrams = NgramClassifier().fit([texts[i] for i in train_rows], targets[train_rows], len(labels))
    val = [texts[i] for i in val_rows]
    seq_len = min(FinetuneConfig().train.seq_len or 10**9, model.config.max_position_embeddings)

    def views(batch):
        return predict_proba(model, tokenizer, batch, seq_len).numpy(), ngrams.predict_proba(batch)

    val_views = views(val)
    temperatures = [fit_temperature(v, targets[val_rows]) for v in val_views]
    print(f"validation: {len(val)} documents; temperatures transformer {temperatures[0]:.2f}, "
          f"n-grams {temperatures[1]:.2f}")
    predicted = {name: views(batch) for name, (batch, _) in sets.items()}  # each set read once by both teachers
    pool_texts = sets["pool"][0]
    shares = np.bincount(targets[train_rows], minlength=len(labels)) / len(train_rows)
    chosen, pseudo = select_pseudo_labels(pooled(list(predicted["pool"]), temperatures), shares, 0.5)
    cotrained = NgramClassifier().fit([texts[i] for i in train_rows] + [pool_texts[i] for i in chosen],
                                      np.concatenate([targets[train_rows], pseudo]), len(labels))
    t_co = fit_temperature(cotrained.predict_proba(val), targets[val_rows])
    print(f"co-trained n-grams: {len(train_rows) + len(chosen)} documents, temperature {t_co:.2f}")
    # cross-fitted (finetune --ngram-cross-fit): the n-gram teacher also learns the validation documents, with the
    # temperature of the fit without them
    everything = NgramClassifier().fit(texts, targets, len(labels))
    for name, (batch, truth) in sets.items():
        transformer, ngram = predicted[name]
        co, cross = cotrained.predict_proba(batch), everything.predict_proba(batch)
        for teacher, probs in (("transformer", transformer), ("n-grams", ngram),
                               ("pooled", pooled([transformer, ngram], temperatures)),
                               ("co-trained n-grams", co), ("co-trained, pooled",
                                                            pooled([transformer, co], [temperatures[0], t_co])),
                               ("cross-fit n-grams", cross),
                               ("cross-fit, pooled", pooled([transformer, cross], temperatures))):
            print(f"{name:5} {teacher:19} accuracy {top(probs, truth, 1):.3f}  most confident 25% "
                  f"{top(probs, truth, .25):.3f}  50% {top(probs, truth, .5):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])

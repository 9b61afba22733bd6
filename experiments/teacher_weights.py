"""Probe: does the n-gram teacher weigh better in the pool when its temperature is fitted on more documents?

    python experiments/teacher_weights.py WORKDIR/DATASET CLASSIFIER [CLASSIFIER...]

WORKDIR/DATASET is a `benchmarks/quality.py --dev N --labelled L` folder (labelled.csv, dev.csv, dev-train.csv);
each CLASSIFIER is a plain fine-tune in it (clf-tinylm, clf-tinylm-seed1, ...). `finetune --unlabelled` fits each
teacher's temperature on the validation documents (11 of 100 labels). The alternative fits the n-gram teacher's on
out-of-fold predictions of every labelled document: 5-fold on the training documents (each fold's classifier also
learning the round's pseudo-labels) plus the validation documents. Prints, per classifier and on average, the
held-out accuracy of round 1's pooled teacher and of round 2's (the n-gram classifier co-trained on round 1's most
confident half of the pool, pooled with the same transformer: the run would use round 1's student), either way.
Uses only tinylm's public functions.
"""

import json
import sys
from pathlib import Path

import numpy as np

from tinylm.checkpoint import load_checkpoint
from tinylm.config import FinetuneConfig
from tinylm.data import Record, read_records
from tinylm.evaluate import predict_proba
from tinylm.files import read_json
from tinylm.finetune import stratified_split
from tinylm.ngrams import NgramClassifier, fit_temperature, pooled
from tinylm.self_training import SelfTraining, select_pseudo_labels

FOLDS = 5


def read(path: Path) -> tuple[list[str], list[str]]:
    records = read_records(path, label_column="label")
    return [r.text for r in records], [r.label for r in records]


def out_of_fold(texts: list[str], targets: np.ndarray, k: int, extra: list[str], extra_targets: np.ndarray):
    """Each labelled document's probabilities from the classifier fitted without its fold (and with the extras)."""
    order = np.random.default_rng(0).permutation(len(texts))
    probs = np.zeros((len(texts), k))
    for fold in range(FOLDS):
        held = order[fold::FOLDS]
        kept = np.setdiff1d(order, held)
        model = NgramClassifier().fit([texts[i] for i in kept] + extra,
                                      np.concatenate([targets[kept], extra_targets]).astype(int), k)
        probs[held] = model.predict_proba([texts[i] for i in held])
    return probs


def probe(folder: Path, labelled: tuple[list[str], list[str]], dev: tuple[list[str], list[str]],
          pool: list[str]) -> dict:
    """One plain fine-tune's pooled teachers on the held-out documents, with either temperature for the n-grams."""
    config = read_json(folder / "config.json")
    labels = [config["id2label"][str(i)] for i in range(config["num_labels"])]
    seed = read_json(folder / "training_args.json")["train"]["seed"]
    (texts, names), (dev, dev_names), k = labelled, dev, len(labels)
    targets, dev_targets = np.array([labels.index(n) for n in names]), np.array([labels.index(n) for n in dev_names])
    train_rows, val_rows = map(np.array, stratified_split(names, FinetuneConfig().val_fraction, seed))
    train, val = [texts[i] for i in train_rows], [texts[i] for i in val_rows]
    labelled_targets = np.concatenate([targets[train_rows], targets[val_rows]])
    model, tokenizer, _ = load_checkpoint(folder, expect_kind="classifier")
    seq_len = min(FinetuneConfig().train.seq_len or 10**9, model.config.max_position_embeddings)
    transformer = {name: predict_proba(model, tokenizer, batch, seq_len).numpy()
                   for name, batch in (("val", val), ("pool", pool), ("dev", dev))}
    t_transformer = fit_temperature(transformer["val"], targets[val_rows])
    shares = np.bincount(targets[train_rows], minlength=k) / len(train_rows)

    def accuracy(probs):
        return float((probs.argmax(-1) == dev_targets).mean())

    def temperature(rule, ngrams, extra, extra_targets):
        """The temperature of an n-gram classifier fitted on the training documents and extra, by the rule."""
        val_probs = ngrams.predict_proba(val)
        if rule == "validation":
            return fit_temperature(val_probs, targets[val_rows])
        oof = np.concatenate([out_of_fold(train, targets[train_rows], k, extra, extra_targets), val_probs])
        return fit_temperature(oof, labelled_targets)

    result = {"classifier": folder.name}
    ngrams = NgramClassifier().fit(train, targets[train_rows], k)
    views = {name: ngrams.predict_proba(batch) for name, batch in (("pool", pool), ("dev", dev))}
    for rule in ("validation", "out of fold"):
        t = temperature(rule, ngrams, [], np.empty(0))
        result[f"round 1, {rule}"] = accuracy(pooled([transformer["dev"], views["dev"]], [t_transformer, t]))
        chosen, pseudo = select_pseudo_labels(pooled([transformer["pool"], views["pool"]], [t_transformer, t]),
                                              shares, 0.5)
        extra = [pool[i] for i in chosen]
        cotrained = NgramClassifier().fit(train + extra, np.concatenate([targets[train_rows], pseudo]), k)
        t2 = temperature(rule, cotrained, extra, pseudo)
        result[f"round 2, {rule}"] = accuracy(pooled([transformer["dev"], cotrained.predict_proba(dev)],
                                                     [t_transformer, t2]))
    return result


def main(work: str, *classifiers: str):
    work = Path(work)
    labelled, dev = read(work / "labelled.csv"), read(work / "dev.csv")
    unlabelled = SelfTraining([work / "dev-train.csv"])  # the pool as finetune --unlabelled reads it
    unlabelled.read_pool([Record(text, name) for text, name in zip(*labelled)], "text", "utf-8")
    pool = unlabelled.texts
    results = [probe(work / c, labelled, dev, pool) for c in classifiers]
    for result in results:
        print(json.dumps(result), flush=True)
    for key in results[0]:
        if key != "classifier":
            print(f"{key:24} held-out accuracy, mean {np.mean([r[key] for r in results]):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])

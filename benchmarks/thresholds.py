"""Global against per-label thresholds (tinylm.labels.choose_thresholds) on Reuters validation, with a well-trained
scorer, so that the rule is judged apart from how far a tinylm model got in its budget:
word 1-2-gram TF-IDF + one-vs-rest LR (C=10) fit on tinylm's own 90% training split of train.csv (seed 0, stratified
by label set); the 10% validation documents are cut in two halves, thresholds chosen on one and scored on the other,
both ways, for 5 random cuts. Never touches test.csv. Needs scikit-learn.

    python benchmarks/thresholds.py
"""
from pathlib import Path
from statistics import mean

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from tinylm.config import FinetuneConfig
from tinylm.evaluate import multi_label_report
from tinylm.finetune import LabelledData
from tinylm.labels import choose_thresholds

train = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "reuters_modapte" / "train.csv"
data = LabelledData.read(train, None, FinetuneConfig.of(multi_label=True, label_column="labels"), "utf-8")
y_train, y_val = data.targets(data.train), data.targets(data.val)
keep = y_train.sum(0) > 0  # OvR needs both classes per label
features = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
x_train = features.fit_transform([r.text for r in data.train])
model = OneVsRestClassifier(LogisticRegression(C=10, max_iter=2000)).fit(x_train, y_train[:, keep])
probs = np.zeros(y_val.shape, dtype=np.float32)
probs[:, keep] = model.predict_proba(features.transform([r.text for r in data.val]))
print(f"{len(data.train)} training, {len(data.val)} validation documents; {int((y_val.sum(0) >= 3).sum())} labels "
      f"with >= 3 validation positives, {int((y_val.sum(0) > 0).sum())} present")
at_half = multi_label_report(y_val, probs >= 0.5, data.labels)
print(f"fixed 0.5 on all validation: micro {at_half['micro_f1']:.4f} macro {at_half['macro_f1']:.4f}")
for rule in ("global", "per-label"):
    scores = []
    for seed in range(5):
        halves = np.array_split(np.random.default_rng(seed).permutation(len(y_val)), 2)
        for a, b in (halves, halves[::-1]):
            t = np.array(choose_thresholds(probs[a], y_val[a], rule))
            scores.append(multi_label_report(y_val[b], probs[b] >= t, data.labels))
    print(f"{rule:9}: micro {mean(s['micro_f1'] for s in scores):.4f} macro {mean(s['macro_f1'] for s in scores):.4f} "
          f"subset {mean(s['subset_accuracy'] for s in scores):.4f}  (10 half-splits)")

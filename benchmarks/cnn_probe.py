"""A probe, not a feature: Kim's (2014) convolutional classifier over the base's embeddings, in place of (or beside)
the encoder, through tinylm's own fine-tuning loop, to see whether SST-2's gap to TF-IDF is the transformer's
(README, "Quality on real data").

    python benchmarks/cnn_probe.py TRAIN.csv --base BASE --out CLF --val VAL.csv --epochs 3 --val-every 464
    python benchmarks/cnn_probe.py TRAIN.csv --base BASE --out CLF --val VAL.csv --beside   # encoder + convolutions

Convolutions of widths 3, 4 and 5 (100 maps each, ReLU) slide over the base's embedding layer (word + position
embeddings, LayerNorm); each map's maximum over the text (max-over-time), dropout 0.5 and a linear layer give the
logits. With --beside the encoder's max-pooled states are concatenated to those features. Everything else is
`finetune`'s: the optimiser, schedule, weight average and the kept epoch (best validation accuracy), so the
default classifier trained by the same command line is the comparison. The classifier folder it writes holds the
extra convolution weights, which tinylm's own commands refuse to load: it is the probe's, not a product's.
"""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
from pathlib import Path
from unittest.mock import patch

import torch
import torch.nn as nn
import torch.nn.functional as F

import tinylm.finetune as finetuning
from tinylm.config import FinetuneConfig, RunOptions
from tinylm.model import BertForSequenceClassification, max_pool


class ConvClassifier(BertForSequenceClassification):
    widths, maps, beside = (3, 4, 5), 100, False

    def __init__(self, config, num_labels, pooling="max"):
        super().__init__(config, num_labels, pooling)
        self.convs = nn.ModuleList(nn.Conv1d(config.hidden_size, self.maps, width) for width in self.widths)
        self.conv_dropout = nn.Dropout(0.5)  # Kim's
        features = self.maps * len(self.widths) + (config.hidden_size if self.beside else 0)
        self.classifier = nn.Linear(features, num_labels)

    def ngram_features(self, x, attention_mask):
        """(B, T, H) -> (B, maps x widths): each map's maximum over the windows that start at a real token."""
        x = (x * attention_mask.unsqueeze(-1).to(x.dtype)).transpose(1, 2)
        x = F.pad(x, (0, max(self.widths) - 1))  # a text shorter than a window still has one
        T = attention_mask.shape[1]
        starts = (torch.arange(T, device=x.device)[None, :] < attention_mask.sum(1)[:, None]).unsqueeze(1)
        return torch.cat([F.relu(conv(x))[:, :, :T].masked_fill(~starts, 0).amax(-1) for conv in self.convs], -1)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, class_weights=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        parts = []
        if self.beside:
            hidden, _ = self.bert(input_ids, attention_mask, token_type_ids)
            parts.append(self.dropout(max_pool(hidden, attention_mask)))
        embedded = self.bert.embeddings(input_ids, token_type_ids)
        parts.append(self.conv_dropout(self.ngram_features(embedded, attention_mask)))
        logits = self.classifier(torch.cat(parts, -1))
        if labels is None:
            return logits
        return F.cross_entropy(logits.float(), labels, weight=class_weights), logits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", type=Path)
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--val", type=Path, help="validation file (default: finetune's stratified 10%% of train)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-minutes", type=float)
    parser.add_argument("--val-every", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beside", action="store_true", help="the encoder's max-pooled states beside the n-grams")
    parser.add_argument("--default", action="store_true", help="tinylm's own classifier, for the comparison")
    args = parser.parse_args(argv)
    ConvClassifier.beside = args.beside
    cfg = FinetuneConfig(epochs=args.epochs, max_minutes=args.max_minutes, val_every=args.val_every, seed=args.seed)
    swap = nullcontext() if args.default else patch.object(finetuning, "BertForSequenceClassification", ConvClassifier)
    with swap:
        summary = finetuning.finetune(args.train, args.base, args.out, cfg, val_path=args.val,
                                      run=RunOptions(quiet=True, overwrite=True, save_minutes=None))
    with open(args.out / "metrics.jsonl", encoding="utf-8") as f:
        validations = [round(r["val_accuracy"], 4) for r in map(json.loads, f) if "val_accuracy" in r]
    name = "tinylm's classifier" if args.default else "encoder + convolutions" if args.beside else "convolutions"
    print(f"{name}: best validation accuracy {summary['best']['val_accuracy']:.4f} "
          f"(every validation: {validations}), {summary['steps']:,} steps")
    return summary


if __name__ == "__main__":
    main()

"""A probe, not a feature: ELECTRA's replaced-token detection (Clark et al., 2020) in place of MLM, through tinylm's
own pretraining loop and budget, to see whether it makes a better base in 15 CPU minutes (README, "Quality on real
data").

    python benchmarks/electra_probe.py TRAIN.csv --tokenizer TOK --out BASE --minutes 15
    tinylm finetune TRAIN.csv --base BASE --out CLF --max-minutes 5 --epochs 100 && tinylm eval CLF TEST.csv

A generator (GENERATOR_LAYERS encoder layers of the `mini` width on the shared embeddings, with the MLM head) fills
the masked positions with tokens sampled from its predictions; the discriminator (the `mini` encoder, `bert`)
tells each token whether it was replaced; the loss is the generator's MLM loss + DETECTION_WEIGHT x the
discriminator's. The base written is a plain BertForMaskedLM holding the discriminator's encoder (what fine-tuning
reads) and the generator's MLM head, so `finetune` takes it as it takes any base.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path
from unittest.mock import patch

import torch
import torch.nn as nn
import torch.nn.functional as F

import tinylm.pretrain as pretraining
from tinylm.config import PRESETS, RunOptions
from tinylm.model import (BertEncoder, BertForMaskedLM, BertModel, BertOnlyMLMHead, BertPreTrainedModel,
                          additive_attention_mask, gelu)


class ElectraPretraining(BertPreTrainedModel):
    generator_layers, detection_weight = 1, 50.0  # Clark et al.: a generator 1/4-1/2 the size, lambda 50

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)  # the discriminator: the base fine-tuning reads
        self.generator = BertEncoder(replace(config, num_hidden_layers=self.generator_layers))
        self.cls = BertOnlyMLMHead(config)  # the generator's
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.detector = nn.Linear(config.hidden_size, 1)
        self.init_weights()
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        self.losses: list[tuple[float, float, float]] = []

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        mask = additive_attention_mask(attention_mask, torch.float32)
        hidden = self.generator(self.bert.embeddings(input_ids), mask)
        selected = labels != -100
        logits = self.cls(hidden[selected]).float()
        generator_loss = F.cross_entropy(logits, labels[selected])
        with torch.no_grad():
            original = torch.where(selected, labels, input_ids)
            corrupted = original.clone()
            corrupted[selected] = torch.multinomial(logits.softmax(-1), 1).squeeze(-1)
            replaced = (corrupted != original).float()
        states, _ = self.bert(corrupted, attention_mask)
        scores = self.detector(gelu(self.dense(states))).squeeze(-1).float()
        real = original != self.config.pad_token_id
        detection_loss = F.binary_cross_entropy_with_logits(scores[real], replaced[real])
        self.losses.append((generator_loss.item(), detection_loss.item(), replaced[real].mean().item()))
        if len(self.losses) % 100 == 0:  # against the detection loss of always answering the replaced share
            g, d, share = (sum(x[i] for x in self.losses[-100:]) / 100 for i in range(3))
            prior = -(share * math.log(share) + (1 - share) * math.log(1 - share))
            print(f"step {len(self.losses)}: generator MLM loss {g:.3f}, detection loss {d:.4f} "
                  f"(the replaced share's entropy {prior:.4f})", flush=True)
        return generator_loss + self.detection_weight * detection_loss, logits


def as_base(model) -> BertForMaskedLM:
    if not isinstance(model, ElectraPretraining):
        return model
    base = BertForMaskedLM(model.config)
    base.load_state_dict({k: v for k, v in model.state_dict().items() if k.startswith(("bert.", "cls."))},
                         strict=False)
    return base


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("train", type=Path)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--generator-layers", type=int, default=1)
    parser.add_argument("--detection-weight", type=float, default=50.0)
    parser.add_argument("--mask", type=float, default=0.15, help="the share of tokens the generator fills")
    args = parser.parse_args(argv)
    ElectraPretraining.generator_layers, ElectraPretraining.detection_weight = args.generator_layers, \
        args.detection_weight
    save = pretraining.save_checkpoint
    preset = PRESETS["mini"]
    # No held-out MLM loss: the discriminator has no MLM head of its own to measure.
    cfg = replace(preset.pretrain, max_steps=None, max_minutes=args.minutes, mlm_probability=args.mask,
                  val_fraction=0.0)
    with patch.object(pretraining, "save_checkpoint", lambda out, model, *a, **k: save(out, as_base(model), *a, **k)), \
            patch.object(pretraining, "BertForMaskedLM", ElectraPretraining):
        summary = pretraining.pretrain([args.train], args.tokenizer, args.out, replace(preset.model), cfg,
                                       RunOptions(quiet=True, overwrite=True))
    print(f"{summary['steps']:,} steps, {summary['tokens_per_s']:,.0f} tokens/s -> {args.out}")
    return summary


if __name__ == "__main__":
    main()

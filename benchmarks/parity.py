"""Print how far tinylm's logits are from transformers' on the same weights (fp32, padded batch).

    python benchmarks/parity.py
"""

from dataclasses import asdict

import torch
import transformers

from tinylm.config import PRESETS
from tinylm.model import BertForMaskedLM, BertForSequenceClassification


def batch(vocab_size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab_size, (4, 128), generator=g)
    attention_mask = torch.ones_like(input_ids)
    for i, n in enumerate((128, 97, 40, 7)):
        attention_mask[i, n:] = 0
    return input_ids * attention_mask, attention_mask


def main():
    torch.manual_seed(0)
    print(f"{'preset':8} {'model':12} {'attention':9} {'max |logit diff|':>17}")
    for preset in ("tiny", "small"):
        config = PRESETS[preset].model
        hf_config = transformers.BertConfig(**asdict(config), num_labels=8)
        input_ids, attention_mask = batch(config.vocab_size)
        for kind in ("mlm", "classifier"):
            ours = BertForMaskedLM(config) if kind == "mlm" else BertForSequenceClassification(config, 8, pooling="cls")
            theirs = (transformers.BertForMaskedLM if kind == "mlm" else transformers.BertForSequenceClassification)(hf_config)
            theirs.load_state_dict(ours.state_dict(), strict=True)
            ours.eval(), theirs.eval()
            with torch.no_grad():
                expected = theirs(input_ids=input_ids, attention_mask=attention_mask).logits
                for attention in ("sdpa", "eager"):
                    ours.set_attention(attention)
                    got = ours(input_ids, attention_mask)
                    real = attention_mask.bool() if kind == "mlm" else slice(None)
                    print(f"{preset:8} {kind:12} {attention:9} {(got[real] - expected[real]).abs().max().item():17.2e}")


if __name__ == "__main__":
    main()

"""Dynamic masking for masked language modelling (Devlin et al., 2019, section 3.1).

Each batch draws a fresh mask: of the selected positions (15% by default) 80% become [MASK], 10% a random
token and 10% stay as they are; the model must predict the original token at every selected position.
"""

from __future__ import annotations

import torch

from tinylm.tokenizer import CLS, MASK, PAD, SEP


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_id: int, vocab_size: int,
                mlm_probability: float = 0.15, generator: torch.Generator | None = None,
                first_regular_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (masked input_ids, labels) with labels = -100 where nothing is predicted.

    special_mask is True at [CLS], [SEP] and [PAD], which are never selected. Random replacements are drawn
    from ids >= first_regular_id so that the model is not shown special tokens in place of words.
    """
    labels = input_ids.clone()
    probability = torch.full(input_ids.shape, mlm_probability)
    probability.masked_fill_(special_mask, 0.0)
    selected = torch.bernoulli(probability, generator=generator).bool()
    labels[~selected] = -100

    inputs = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & selected
    inputs[to_mask] = mask_id
    # Half of the remaining 20%: a random token.
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & selected & ~to_mask
    random_ids = torch.randint(first_regular_id, vocab_size, input_ids.shape, generator=generator)
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


def special_positions(input_ids: torch.Tensor, ids: dict[str, int]) -> torch.Tensor:
    """True at [CLS], [SEP] and [PAD]: the positions never selected for prediction."""
    return (input_ids == ids[PAD]) | (input_ids == ids[CLS]) | (input_ids == ids[SEP])


def mask_rows(input_ids: torch.Tensor, ids: dict[str, int], vocab_size: int, mlm_probability: float,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of packed token ids -> (masked input_ids, attention_mask, labels), for pretraining and evaluation.

    ids maps the special tokens to their ids. Random replacements start after the last special token: 5 for our
    tokenizers, 104 for an imported BERT vocabulary ([PAD]=0, [unused*], [UNK]=100 ... [MASK]=103).
    """
    inputs, labels = mask_tokens(input_ids, special_positions(input_ids, ids), ids[MASK], vocab_size,
                                 mlm_probability, generator, first_regular_id=max(ids.values()) + 1)
    return inputs, (input_ids != ids[PAD]).long(), labels

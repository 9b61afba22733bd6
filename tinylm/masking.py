"""Dynamic masking for masked language modelling (Devlin et al., 2019, section 3.1).

Each batch draws a fresh mask: of the selected positions (30% by default) 80% become [MASK], 10% a random
token and 10% stay as they are; the model must predict the original token at every selected position.

The random numbers are drawn for the whole (global) batch first and the tokens masked afterwards, row by row:
a row's mask then depends only on the generator and the row's place in the batch, so that a batch split over
processes or accumulation steps is masked exactly as in one piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinylm.tokenizer import CLS, MASK, PAD, SEP


@dataclass
class MaskDraws:
    """The random numbers of one batch's masking, one of each per position."""

    select: torch.Tensor  # uniform in [0, 1): the position is selected when below mlm_probability
    kind: torch.Tensor  # uniform in [0, 1): below 0.8 [MASK], below 0.9 a random token, else kept as is
    random_ids: torch.Tensor  # the random token, where one is put

    @classmethod
    def draw(cls, shape, vocab_size: int, first_regular_id: int = 0,
             generator: torch.Generator | None = None) -> "MaskDraws":
        return cls(torch.rand(shape, generator=generator), torch.rand(shape, generator=generator),
                   torch.randint(first_regular_id, vocab_size, shape, generator=generator))

    def rows(self, start: int, stop: int) -> "MaskDraws":
        return MaskDraws(self.select[start:stop], self.kind[start:stop], self.random_ids[start:stop])


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_id: int, vocab_size: int,
                mlm_probability: float = 0.15, generator: torch.Generator | None = None,
                first_regular_id: int = 0, draws: MaskDraws | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (masked input_ids, labels) with labels = -100 where nothing is predicted.

    special_mask is True at [CLS], [SEP] and [PAD], which are never selected. Random replacements are drawn
    from ids >= first_regular_id so that the model is not shown special tokens in place of words. draws: the
    random numbers to use (drawn now from `generator` when not given).
    """
    if draws is None:
        draws = MaskDraws.draw(input_ids.shape, vocab_size, first_regular_id, generator)
    selected = (draws.select < mlm_probability) & ~special_mask
    labels = input_ids.masked_fill(~selected, -100)
    inputs = input_ids.masked_fill(selected & (draws.kind < 0.8), mask_id)
    to_random = selected & (draws.kind >= 0.8) & (draws.kind < 0.9)
    inputs[to_random] = draws.random_ids[to_random]
    return inputs, labels


def special_positions(input_ids: torch.Tensor, ids: dict[str, int]) -> torch.Tensor:
    """True at [CLS], [SEP] and [PAD]: the positions never selected for prediction."""
    return (input_ids == ids[PAD]) | (input_ids == ids[CLS]) | (input_ids == ids[SEP])


def first_regular_id(ids: dict[str, int]) -> int:
    """Random replacements start after the last special token: 5 for our tokenizers, 104 for an imported BERT
    vocabulary ([PAD]=0, [unused*], [UNK]=100 ... [MASK]=103)."""
    return max(ids.values()) + 1


def mask_rows(input_ids: torch.Tensor, ids: dict[str, int], vocab_size: int, mlm_probability: float,
              generator: torch.Generator | None = None, draws: MaskDraws | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of packed token ids -> (masked input_ids, attention_mask, labels), for pretraining and evaluation.

    ids maps the special tokens to their ids.
    """
    inputs, labels = mask_tokens(input_ids, special_positions(input_ids, ids), ids[MASK], vocab_size,
                                 mlm_probability, generator, first_regular_id(ids), draws)
    return inputs, (input_ids != ids[PAD]).long(), labels

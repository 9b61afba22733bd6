"""Fine-tuning options for real data: balanced class weights."""

import torch
import torch.nn.functional as F

from conftest import tiny_config
from tinylm.finetune import ClassificationBatches, balanced_weights
from tinylm.model import BertForSequenceClassification


def test_balanced_weights_make_every_class_count_the_same():
    targets = [0] * 80 + [1] * 15 + [2] * 5
    weights = balanced_weights(targets, 3)
    assert torch.allclose(weights, torch.tensor([100 / (3 * 80), 100 / (3 * 15), 100 / (3 * 5)]))
    counts = torch.bincount(torch.tensor(targets)).float()
    assert torch.allclose(weights * counts, torch.full((3,), 100 / 3))  # each class's total weight is equal


def test_weighted_batches_give_the_weighted_loss():
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(), num_labels=3, pooling="mean").eval()
    sequences = [[2, 5 + i, 6 + i, 3] for i in range(10)]
    targets = [0] * 7 + [1] * 2 + [2]
    weights = balanced_weights(targets, 3)
    batch = ClassificationBatches(sequences, targets, 10, 0, 0, weights)(0)
    loss, logits = model(**batch.inputs)
    expected = F.cross_entropy(logits, batch.inputs["labels"], weight=weights)
    assert torch.allclose(loss, expected)
    assert not torch.allclose(loss, F.cross_entropy(logits, batch.inputs["labels"]))

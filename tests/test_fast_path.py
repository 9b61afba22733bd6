"""The fast training path (fused attention, MLM head at masked positions only, cheap CPU dropout masks, compile)
against the written-out reference: same loss curve over 200 steps in fp32, close in bf16."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from tinylm.data import PackedRows
from tinylm.model import BertForMaskedLM, dropout
from tinylm.pretrain import MLMBatches
from tinylm.config import RunOptions, TrainArgs
from tinylm.distributed import World
from tinylm.train import MetricsLog, Plan, train

IDS = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}


class ReferenceMLM(torch.nn.Module):
    """Hugging Face's way: written-out attention, the decoder at every position, cross-entropy ignoring -100."""

    def __init__(self, model: BertForMaskedLM):
        super().__init__()
        self.model = model
        model.set_attention("eager")

    def forward(self, input_ids, attention_mask=None, labels=None):
        hidden, _ = self.model.bert(input_ids, attention_mask)
        logits = self.model.cls(hidden)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=-100), logits


def loss_curve(model, tmp_path, name, steps=200, precision="fp32", device="cpu"):
    rng = np.random.default_rng(0)  # a learnable language: Zipf-distributed words, many following the one before
    zipf = 1 / np.arange(1, 93)
    stream = 5 + rng.choice(92, size=8 * 31 * 40, p=zipf / zipf.sum())
    follows = rng.random(len(stream)) < 0.5
    stream[1:][follows[1:]] = 5 + (stream[:-1][follows[1:]] * 7 + 3) % 92
    stream[::23] = IDS["[SEP]"]
    batches = MLMBatches(PackedRows(stream, 32, IDS["[CLS]"], IDS["[PAD]"]), 8, 0, IDS, 97, 0.15)
    log = MetricsLog(tmp_path / f"{name}.jsonl")
    train(model, batches, TrainArgs(lr=2e-3, log_every=1), Plan(steps, precision), log, RunOptions(quiet=True),
          World(device=torch.device(device)))
    import json

    return np.array([json.loads(line)["loss"] for line in log.path.read_text().splitlines()])


def fresh(**overrides):
    """The tiny preset's sizes (hidden 64, 2 layers, 2 heads, FFN 256) on a 97-token vocabulary."""
    torch.manual_seed(0)
    sizes = dict(hidden_size=64, num_attention_heads=2, intermediate_size=256, max_position_embeddings=64)
    return BertForMaskedLM(tiny_config(**{**sizes, **overrides}))


def test_fp32_loss_curve_of_the_fast_path_equals_the_reference_over_200_steps(tmp_path):
    fast = loss_curve(fresh(), tmp_path, "fast")
    reference = loss_curve(ReferenceMLM(fresh()), tmp_path, "reference")
    assert fast[-1] < fast[0] - 0.5  # it learns
    assert np.abs(fast - reference).max() < 1e-3, np.abs(fast - reference).max()


def test_bf16_loss_curve_stays_close_to_fp32(tmp_path):
    fp32 = loss_curve(fresh(), tmp_path, "fp32", steps=100)
    bf16 = loss_curve(fresh(), tmp_path, "bf16", steps=100, precision="bf16")
    assert np.abs(fp32 - bf16).max() < 0.1 and abs(fp32[-10:].mean() - bf16[-10:].mean()) < 0.05


def test_fast_dropout_drops_p_and_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(1000, 1000, requires_grad=True)
    y = dropout(x, 0.1, training=True)
    kept = (y != 0).float()
    assert abs(kept.mean().item() - 0.9) < 2e-3
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 3e-3
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient flows through the same mask and scale
    assert dropout(x, 0.1, training=False) is x and dropout(x, 0.0, training=True) is x


def test_dropout_on_changes_training_but_not_evaluation():
    model = fresh(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    ids = torch.randint(5, 97, (2, 16))
    model.eval()
    assert torch.equal(model(ids), model(ids))
    model.train()
    assert not torch.equal(model(ids), model(ids))


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one_and_saves_plain_names(tmp_path):
    from tinylm.checkpoint import save_checkpoint
    from tinylm.tokenizer import train_tokenizer

    model = fresh()
    compiled = torch.compile(model)
    eager_curve = loss_curve(fresh(), tmp_path, "eager", steps=20)
    compiled_curve = loss_curve(compiled, tmp_path, "compiled", steps=20)
    assert np.abs(eager_curve - compiled_curve).max() < 1e-3
    save_checkpoint(tmp_path / "ckpt", compiled, train_tokenizer(["a b c"] * 3, vocab_size=30), {})
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        assert not any("_orig_mod" in k for k in f.keys())


def test_a_compiled_model_saves_and_checkpoints_under_its_own_names(tmp_path):
    """torch.compile wraps the model as `_orig_mod`; that prefix must never reach a saved file (compiling itself
    happens on the first call, so this test does not pay for it; the slow test above trains compiled)."""
    from safetensors import safe_open

    from tinylm.checkpoint import save_checkpoint
    from tinylm.tokenizer import train_tokenizer

    compiled = torch.compile(fresh())
    assert any(k.startswith("_orig_mod.") for k in compiled.state_dict())
    save_checkpoint(tmp_path / "ckpt", compiled, train_tokenizer(["a b c"] * 3, vocab_size=30), {})
    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        assert f.keys() and not any("_orig_mod" in k for k in f.keys())

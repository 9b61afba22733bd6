"""The model: written-out attention equals the fused kernel, padding is respected, and numbers match transformers."""

import pytest
import torch

from conftest import tiny_config
from tinylm.model import BertForMaskedLM, BertForSequenceClassification, scaled_dot_product_attention


def test_written_out_attention_equals_fused_kernel():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=g) for _ in range(3))
    mask = torch.zeros(2, 1, 1, 9)
    mask[1, ..., 6:] = torch.finfo(torch.float32).min
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ["mlm", "classifier"])
def test_eager_and_sdpa_models_agree(kind, padded_batch):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config()) if kind == "mlm" else BertForSequenceClassification(tiny_config(), 3)
    model.eval()
    input_ids, attention_mask, token_type_ids = padded_batch
    fused = model(input_ids, attention_mask, token_type_ids)
    model.set_attention("eager")
    eager = model(input_ids, attention_mask, token_type_ids)
    torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_padding_does_not_change_the_real_tokens(pooling, padded_batch):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(), 3, pooling=pooling).eval()
    input_ids, attention_mask, _ = padded_batch
    batched = model(input_ids, attention_mask)
    for i in range(len(input_ids)):
        n = int(attention_mask[i].sum())
        alone = model(input_ids[i:i + 1, :n])
        torch.testing.assert_close(batched[i:i + 1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling, reduce", [("mean", lambda h: h.mean(0)), ("max", lambda h: h.amax(0))])
def test_pooling_reads_the_real_tokens_only(pooling, reduce, padded_batch):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(), 3, pooling=pooling).eval()
    input_ids, attention_mask, _ = padded_batch
    assert model.bert.pooler is None
    hidden, _ = model.bert(input_ids, attention_mask)
    n = int(attention_mask[1].sum())
    assert n < input_ids.shape[1]  # the row has padding, whose states must not count
    assert not torch.equal(reduce(hidden[1]), reduce(hidden[1, :n]))
    expected = model.classifier(reduce(hidden[1, :n]))
    torch.testing.assert_close(model(input_ids, attention_mask)[1], expected)


def test_decoder_is_tied_to_word_embeddings():
    model = BertForMaskedLM(tiny_config())
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.cls.predictions.decoder.bias is model.cls.predictions.bias


def test_sparse_mlm_head_equals_full_logits_at_masked_positions(padded_batch):
    torch.manual_seed(0)
    model = BertForMaskedLM(tiny_config()).eval()
    input_ids, attention_mask, _ = padded_batch
    labels = torch.full_like(input_ids, -100)
    labels[0, 3], labels[1, 7], labels[2, 1] = 11, 22, 33
    loss, sparse_logits = model(input_ids, attention_mask, labels=labels)
    full = model(input_ids, attention_mask)
    selected = labels != -100
    torch.testing.assert_close(sparse_logits, full[selected])
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(full.view(-1, 97), labels.view(-1)))


# ---- parity with Hugging Face transformers --------------------------------------------------------------------

def hf_config(config, **extra):
    transformers = pytest.importorskip("transformers")
    from dataclasses import asdict

    return transformers.BertConfig(**asdict(config), **extra)


@pytest.mark.parametrize("kind", ["mlm", "classifier"])
def test_state_dict_keys_and_logits_match_transformers(kind, padded_batch):
    transformers = pytest.importorskip("transformers")
    config = tiny_config()
    torch.manual_seed(0)
    if kind == "mlm":
        ours = BertForMaskedLM(config).eval()
        theirs = transformers.BertForMaskedLM(hf_config(config)).eval()
    else:
        ours = BertForSequenceClassification(config, num_labels=5).eval()
        theirs = transformers.BertForSequenceClassification(hf_config(config, num_labels=5)).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict()) or set(ours.state_dict()) == set(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict(), strict=True)
    input_ids, attention_mask, token_type_ids = padded_batch
    with torch.no_grad():
        expected = theirs(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits
        for implementation in ("sdpa", "eager"):
            ours.set_attention(implementation)
            got = ours(input_ids, attention_mask, token_type_ids)
            keep = attention_mask.bool() if kind == "mlm" else slice(None)  # padded positions' logits are unused
            assert (got[keep] - expected[keep]).abs().max().item() < 1e-5


def test_mlm_loss_and_gradients_match_transformers(padded_batch):
    transformers = pytest.importorskip("transformers")
    config = tiny_config()
    torch.manual_seed(0)
    ours = BertForMaskedLM(config)
    theirs = transformers.BertForMaskedLM(hf_config(config))
    theirs.load_state_dict(ours.state_dict(), strict=True)
    input_ids, attention_mask, _ = padded_batch
    labels = torch.where(torch.rand(input_ids.shape, generator=torch.Generator().manual_seed(3)) < 0.3, input_ids, -100)
    labels[attention_mask == 0] = -100
    loss, _ = ours(input_ids, attention_mask, labels=labels)
    expected = theirs(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    assert abs(loss.item() - expected.item()) < 1e-5
    loss.backward()
    expected.backward()
    theirs_grads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs_grads[name].grad, atol=1e-5, rtol=1e-4, msg=name)

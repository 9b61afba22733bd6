"""BERT (Devlin et al., 2019) written out in PyTorch.

Module and parameter names follow Hugging Face's modeling_bert.py, so a state dict of ours loads into
transformers' BertForMaskedLM / BertForSequenceClassification key for key (and back) with strict=True.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tinylm.config import BertConfig, Pooling
from tinylm.labels import MULTI_LABEL, PROBLEM_TYPES, SINGLE_LABEL

POOLINGS = Pooling.values()


def scaled_dot_product_attention(q, k, v, additive_mask=None, dropout_p: float = 0.0, training: bool = False):
    """softmax(Q K^T / sqrt(d_k) + mask) V, written out as in the paper; the reference for the fused kernel."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, nh, T, T)
    if additive_mask is not None:
        scores = scores + additive_mask
    probs = F.softmax(scores, dim=-1)
    probs = dropout(probs, dropout_p, training)
    return probs @ v  # (B, nh, T, hs)


def dropout(x, p: float, training: bool):
    """Inverted dropout (Srivastava et al., 2014): zero each element with probability p, scale the rest by 1/(1-p).

    On the CPU the keep-mask comes from 31-bit random integers, two per 64-bit draw: PyTorch's bernoulli_ draws
    one random number per element there, a large share of a training step (docs/performance.md). The
    resolution of p is 2^-31 (PyTorch's float draw has 2^-24). Elsewhere PyTorch's fused kernel is used.
    """
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    n = x.numel()
    bits = torch.empty((n + 1) // 2, dtype=torch.int64).random_().view(torch.int32)[:n].view(x.shape)
    keep = (bits & 0x7FFFFFFF) >= round(p * 2**31)  # random_ leaves each int64's top bit 0: use 31 bits a half
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """nn.Dropout with the cheaper CPU mask above (same module, so state dicts and names are unchanged)."""

    def forward(self, x):
        return dropout(x, self.p, self.training)


class BertEmbeddings(nn.Module):
    """Token + position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):
        T = input_ids.size(1)
        positions = torch.arange(T, device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention: project to heads, attend, merge heads."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.use_sdpa = True  # False: the written-out reference above

    def split_heads(self, x):
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, hidden_states, attention_mask=None):
        """attention_mask: additive (B, 1, 1, T) float mask, 0 to keep and dtype-min to drop, or None."""
        q, k, v = (self.split_heads(proj(hidden_states)) for proj in (self.query, self.key, self.value))
        # With attention dropout on the CPU, PyTorch's SDPA falls back to its own written-out path with the slow
        # mask; ours is the same computation with the cheaper one.
        cpu_dropout = self.training and self.dropout_p > 0 and q.device.type == "cpu"
        if self.use_sdpa and not cpu_dropout:
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attention_mask, dropout_p=self.dropout_p if self.training else 0.0
            )
        else:
            context = scaled_dot_product_attention(q, k, v, attention_mask, self.dropout_p, self.training)
        B, _, T, _ = context.shape
        return context.transpose(1, 2).reshape(B, T, self.num_heads * self.head_size)


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)  # post-norm, as in BERT


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, attention_mask=None):
        return self.output(self.self(hidden_states, attention_mask), hidden_states)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden_states):
        return gelu(self.dense(hidden_states))


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class BertLayer(nn.Module):
    """One encoder block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, attention_mask=None):
        x = self.attention(hidden_states, attention_mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden_states, attention_mask=None):
        for block in self.layer:
            hidden_states = block(hidden_states, attention_mask)
        return hidden_states


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence representation BERT's classifier reads."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        return torch.tanh(self.dense(hidden_states[:, 0]))


def mean_pool(hidden_states, attention_mask=None):
    """The average of the real tokens' states (B, T, H) -> (B, H)."""
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    keep = attention_mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, T, 1)
    return (hidden_states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


def max_pool(hidden_states, attention_mask=None):
    """The element-wise maximum over the real tokens' states (B, T, H) -> (B, H)."""
    if attention_mask is None:
        return hidden_states.amax(dim=1)
    padding = (attention_mask == 0).unsqueeze(-1)  # (B, T, 1)
    return hidden_states.masked_fill(padding, torch.finfo(hidden_states.dtype).min).amax(dim=1)


class BertModel(nn.Module):
    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        """Returns (sequence_output (B, T, H), pooled_output (B, H) or None)."""
        x = self.embeddings(input_ids, token_type_ids)
        x = self.encoder(x, additive_attention_mask(attention_mask, x.dtype))
        return x, (self.pooler(x) if self.pooler is not None else None)


def additive_attention_mask(attention_mask, dtype):
    """(B, T) of 1 = token / 0 = padding -> (B, 1, 1, T) of 0 / dtype-min, as Hugging Face builds it.

    A mask without padding becomes None, which lets SDPA pick its fastest kernel; not while exporting to ONNX,
    where the mask is an input of the graph and the shortcut would be traced as a constant.
    """
    if attention_mask is None or (not torch.onnx.is_in_onnx_export() and bool(attention_mask.all())):
        return None
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * torch.finfo(dtype).min


def gelu(x):
    return F.gelu(x)  # exact erf form, as BERT's hidden_act "gelu"


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(gelu(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)  # weight tied to word_embeddings
        self.bias = self.decoder.bias  # Hugging Face exposes the decoder bias twice, under both names

    def forward(self, hidden_states):
        return self.decoder(self.transform(hidden_states))


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, hidden_states):
        return self.predictions(hidden_states)


class BertPreTrainedModel(nn.Module):
    config: BertConfig

    def init_weights(self):
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def set_attention(self, implementation: str):
        """"sdpa" (fused kernel, default) or "eager" (the written-out reference)."""
        if implementation not in ("sdpa", "eager"):
            raise ValueError(f"unknown attention implementation {implementation!r}")
        for module in self.modules():
            if isinstance(module, BertSelfAttention):
                module.use_sdpa = implementation == "sdpa"


class BertForMaskedLM(BertPreTrainedModel):
    """Encoder + MLM head whose decoder shares the word-embedding matrix."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.init_weights()
        self.tie_weights()

    def tie_weights(self):
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
        """Without labels: logits (B, T, V). With labels (-100 = not predicted): (loss, logits (N_masked, V)).

        With labels the head runs only at the masked positions: the vocabulary projection is the largest
        matmul of the step, and at 15% masking 85% of it would be thrown away.
        """
        hidden, _ = self.bert(input_ids, attention_mask, token_type_ids)
        if labels is None:
            return self.cls(hidden)
        selected = labels != -100
        logits = self.cls(hidden[selected])  # (N_masked, V)
        targets = labels[selected]
        if targets.numel() == 0:
            return logits.sum() * 0.0, logits  # keeps the graph; nothing was masked in this batch
        return F.cross_entropy(logits.float(), targets), logits


def soft_target_loss(log_probs: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None = None):
    """KL divergence of the predicted from the target distributions, the class weights weighing each class's share of
    it, over the weighted target mass: for one-hot targets, exactly cross-entropy with class ids (the targets'
    entropy, a constant, is left out of the loss so that a perfect student scores 0, as with labels)."""
    weights = class_weights if class_weights is not None else torch.ones_like(targets[0])
    divergence = weights * (torch.xlogy(targets, targets) - targets * log_probs)
    return divergence.sum() / (targets * weights).sum()


class BertForSequenceClassification(BertPreTrainedModel):
    """Encoder + sentence representation + dropout + linear classifier.

    pooling="cls" is exactly BERT's (and Hugging Face's): the [CLS] state through the tanh pooler.
    pooling="mean" feeds the classifier the mean of the token states and has no pooler. It trains far faster
    from a briefly pretrained or random encoder: [CLS] must first learn to attend to the words that matter,
    while the mean starts out as a bag of contextual words (as in Sentence-BERT, Reimers & Gurevych, 2019).
    pooling="max" takes each feature's maximum over the tokens (max-over-time, as in Kim's 2014 CNN): one
    strong word is not diluted by the rest of the document, which suits short texts decided by a few words.

    problem_type is transformers' name: "single_label_classification" trains with cross-entropy over a softmax,
    "multi_label_classification" with binary cross-entropy on a sigmoid per label (float 0/1 targets).
    """

    def __init__(self, config: BertConfig, num_labels: int, pooling: str = "cls",
                 problem_type: str = SINGLE_LABEL):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if problem_type not in PROBLEM_TYPES:
            raise ValueError(f"unknown problem_type {problem_type!r}")
        self.config = config
        self.num_labels = num_labels
        self.pooling = pooling
        self.problem_type = problem_type
        self.bert = BertModel(config, add_pooling_layer=pooling == "cls")
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, class_weights=None,
                pos_weight=None):
        """Returns logits (B, num_labels), or (loss, logits) when labels are given: class ids (B,) or class
        probabilities (B, num_labels) for single-label, 0/1 floats (B, num_labels) for multi-label, whose positives
        weigh pos_weight (num_labels,) if given."""
        hidden, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        if self.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)
        elif self.pooling == "max":
            pooled = max_pool(hidden, attention_mask)
        logits = self.classifier(self.dropout(pooled))
        if labels is None:
            return logits
        if self.problem_type == MULTI_LABEL:
            return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=pos_weight), logits
        if labels.is_floating_point():  # soft targets: KL(labels || softmax), weighted and averaged as class ids are
            return soft_target_loss(logits.float().log_softmax(-1), labels, class_weights), logits
        return F.cross_entropy(logits.float(), labels, weight=class_weights), logits

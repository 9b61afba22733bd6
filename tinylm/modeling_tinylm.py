"""A tinylm classifier with mean or max pooling, as a transformers model.

This file is not part of tinylm's own code path: `tinylm export --format hf` copies it into the exported folder,
where transformers runs it when the folder is loaded with trust_remote_code=True. It imports transformers and
torch only (no tinylm), so the folder loads on a machine without tinylm, and nothing is fetched from the network.

transformers' BertForSequenceClassification always classifies the [CLS] state through the tanh pooler; tinylm's
mean pooling averages the token states of the real (unpadded) tokens and max pooling takes each feature's
maximum over them. The encoder is transformers' own BertModel, so the weights keep BERT's names.
"""

import torch
from torch import nn
from transformers import BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class TinyLMBertConfig(BertConfig):
    # A model type of its own: without trust_remote_code transformers refuses the folder instead of loading a
    # BertForSequenceClassification with a random pooler in place of tinylm's pooling.
    model_type = "tinylm_bert"

    def __init__(self, classifier_pooling="mean", **kwargs):
        super().__init__(**kwargs)
        self.classifier_pooling = classifier_pooling


def pool(hidden_states, attention_mask, pooling):
    """(B, T, H) token states -> (B, H): the mean or the element-wise maximum over the real tokens."""
    keep = attention_mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, T, 1)
    if pooling == "mean":
        return (hidden_states * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)
    if pooling == "max":
        padding = keep == 0
        return hidden_states.masked_fill(padding, torch.finfo(hidden_states.dtype).min).amax(dim=1)
    raise ValueError(f"classifier_pooling must be 'mean' or 'max', got {pooling!r}")


class TinyLMBertForSequenceClassification(BertPreTrainedModel):
    config_class = TinyLMBertConfig

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.pooling = config.classifier_pooling
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels=None, return_dict=None, **kwargs):
        outputs = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        hidden_states = outputs.last_hidden_state
        if attention_mask is None:
            attention_mask = torch.ones(hidden_states.shape[:2], dtype=torch.long, device=hidden_states.device)
        logits = self.classifier(self.dropout(pool(hidden_states, attention_mask, self.pooling)))
        loss = None
        if labels is not None:
            if self.config.problem_type == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                        attentions=outputs.attentions)

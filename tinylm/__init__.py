"""tinylm: train your own small BERT-style language model and text classifier on your own documents."""

__version__ = "0.1.0"

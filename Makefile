# Set-up and the everyday jobs. `make demo` and `make test` work on a fresh machine with Python 3.11 and pip.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of PyTorch goes in first, so that pip never pulls a multi-GB CUDA build here.
# On a GPU machine: make TORCH='torch' install
TORCH  ?= torch==2.13.0
DEMO   ?= runs/demo
DEMO_PRESET ?= tiny
DEMO_EPOCHS ?= 10

.PHONY: install demo test test-slow parity bench bench-throughput bench-memory bench-predict bench-deploy bench-quality data clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

# The whole pipeline on the bundled invoices: tokenizer -> base model -> classifier -> evaluation -> predictions.
demo: install
	@start=$$(date +%s); \
	$(BIN)/tinylm tokenize data/corpus.jsonl data/train.csv --out $(DEMO)/tokenizer --vocab-size 8000 && \
	$(BIN)/tinylm pretrain data/corpus.jsonl data/train.csv --tokenizer $(DEMO)/tokenizer --out $(DEMO)/base \
		--preset $(DEMO_PRESET) --overwrite && \
	$(BIN)/tinylm finetune data/train.csv --base $(DEMO)/base --out $(DEMO)/classifier --epochs $(DEMO_EPOCHS) \
		--lr 2e-3 --overwrite && \
	$(BIN)/tinylm eval $(DEMO)/classifier data/test.csv && \
	$(BIN)/tinylm predict $(DEMO)/classifier data/test.csv --out $(DEMO)/predictions.jsonl && \
	echo "demo finished in $$(( $$(date +%s) - start ))s; checkpoints in $(DEMO)/"

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# tinylm's logits against transformers' on the same weights (fp32).
parity: install
	$(BIN)/python benchmarks/parity.py

# Pretraining speed and memory against transformers, printed side by side (see docs/performance.md).
$(BIN)/.bench: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@

bench: bench-throughput bench-memory bench-predict

bench-throughput: $(BIN)/.bench
	$(BIN)/python benchmarks/throughput.py

bench-memory: $(BIN)/.bench
	$(BIN)/python benchmarks/memory.py

# Documents/s of `tinylm predict`'s path against transformers' on the same weights and texts.
bench-predict: $(BIN)/.bench
	$(BIN)/python benchmarks/predict_speed.py

# The checkpoint, its ONNX exports (fp32, int8) and its transformers export: parity, documents/s, int8 accuracy.
bench-deploy: $(BIN)/.bench
	$(BIN)/python benchmarks/deploy.py

# Accuracy on four real data sets at 15 + 5 minutes each, beside no pretraining and TF-IDF (about 2 hours).
bench-quality: $(BIN)/.bench
	$(BIN)/python benchmarks/quality.py --json runs/bench-quality.json

data:
	$(PYTHON) data/generate.py

clean:
	rm -rf runs .pytest_cache

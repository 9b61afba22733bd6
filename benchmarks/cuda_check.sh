#!/usr/bin/env bash
# The GPU checks in one go, for a machine with a CUDA GPU and PyTorch (run from the repository root):
# tests/test_cuda.py, `tinylm pretrain` through the CLI with no device flag, the throughput benchmark against
# transformers in bf16 (batch 32 as on the CPU, and 256, which fills a GPU better), and a profile of one step.
#   bash benchmarks/cuda_check.sh [OUT_DIR]
set -uo pipefail
OUT_DIR=${1:-runs/cuda}
mkdir -p "$OUT_DIR"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TINYLM_CACHE=$OUT_DIR/cache
PY=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, transformers, tokenizers; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'transformers', transformers.__version__, 'tokenizers', tokenizers.__version__)"

echo "== tests/test_cuda.py"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -n 15

echo "== tinylm pretrain on the bundled corpus, no device flag (small and base presets, 300 steps each)"
timeout 60 $PY -m tinylm tokenize data/corpus.jsonl --out "$OUT_DIR/tok" --vocab-size 8000 >/dev/null
for preset in small base; do
    timeout 100 $PY -m tinylm pretrain data/corpus.jsonl --tokenizer "$OUT_DIR/tok" --out "$OUT_DIR/$preset" \
        --preset "$preset" --max-steps 300 --overwrite --quiet 2>&1 | tail -n 3
    $PY -c "import sys; from pathlib import Path; from tinylm.report import read_metrics; \
r=[x for x in read_metrics(Path(sys.argv[1])) if 'tokens_per_s' in x]; \
print(sys.argv[2], 'final loss %.3f' % r[-1]['loss'], 'tokens/s %.0f' % r[-1]['tokens_per_s'])" \
        "$OUT_DIR/$preset/metrics.jsonl" "$preset"
done

echo "== throughput, batch 32"
timeout 150 $PY benchmarks/throughput.py --steps 50 --rounds 3 --base-steps 30 --base-warmup 5 --warmup 5 2>&1
echo "== throughput, batch 256, with --compile"
timeout 200 $PY benchmarks/throughput.py --batch 256 --steps 20 --rounds 3 --base-steps 10 --base-warmup 5 \
    --warmup 5 --compile --profile 2>&1

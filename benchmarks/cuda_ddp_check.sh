#!/usr/bin/env bash
# The multi-process checks for a machine with CUDA GPUs and PyTorch (run from the repository root):
# tests/test_cuda.py and tests/test_distributed.py; on the GPU, `tinylm pretrain --grad-accum 2` against torchrun
# with two processes (fp32, dropout 0; losses, tokens and weights compared); the time cost of accumulation.
# With one GPU the two processes share it through gloo (TINYLM_BACKEND=gloo): nccl needs a GPU per process,
# and is used (by default) when there are two.
#   bash benchmarks/cuda_ddp_check.sh [OUT_DIR]
set -uo pipefail
OUT_DIR=${1:-runs/cuda-ddp}
mkdir -p "$OUT_DIR"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TINYLM_CACHE=$OUT_DIR/cache
PY=${PYTHON:-python3}
GPUS=$(nvidia-smi -L | wc -l)

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', torch.cuda.nccl.version())"

echo "== tests/test_cuda.py tests/test_distributed.py"
timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_distributed.py 2>&1 | tail -n 15

echo "== one process accumulating 2 micro-batches against 2 processes, on the GPU (fp32, dropout 0)"
timeout 60 $PY -m tinylm tokenize data/corpus.jsonl --out "$OUT_DIR/tok" --vocab-size 8000 >/dev/null
printf '[model]\nhidden_dropout_prob = 0.0\nattention_probs_dropout_prob = 0.0\n\n[train]\nlog_every = 1\n' \
    > "$OUT_DIR/no-dropout.toml"
COMMON="data/corpus.jsonl --tokenizer $OUT_DIR/tok --preset small --config $OUT_DIR/no-dropout.toml --max-steps 50
    --batch-size 16 --precision fp32 --device cuda --quiet --overwrite"
timeout 120 $PY -m tinylm pretrain $COMMON --grad-accum 2 --out "$OUT_DIR/one" 2>&1 | tail -n 2
[ "$GPUS" -ge 2 ] && BACKEND=nccl || BACKEND=gloo
TINYLM_BACKEND=$BACKEND timeout 120 $PY -m torch.distributed.run --standalone --nproc-per-node 2 -m tinylm pretrain \
    $COMMON --out "$OUT_DIR/two" 2>&1 | grep -v "^\*\|OMP_NUM" | tail -n 3
$PY - "$OUT_DIR" "$BACKEND" <<'PYEOF'
import sys
from pathlib import Path
from safetensors.torch import load_file
from tinylm.report import read_metrics
out, backend = Path(sys.argv[1]), sys.argv[2]
a = [r for r in read_metrics(out / "one" / "metrics.jsonl") if "loss" in r]
b = [r for r in read_metrics(out / "two" / "metrics.jsonl") if "loss" in r]
wa, wb = load_file(str(out / "one" / "model.safetensors")), load_file(str(out / "two" / "model.safetensors"))
print(f"2 processes ({backend}) vs grad-accum 2 on the GPU, {len(a)} steps: largest loss difference "
      f"{max(abs(x['loss'] - y['loss']) for x, y in zip(a, b)):.2e}, largest weight difference "
      f"{max((wa[k] - wb[k]).abs().max().item() for k in wa):.2e}, tokens {a[-1]['tokens']} vs {b[-1]['tokens']}, "
      f"loss {a[0]['loss']:.3f} -> {a[-1]['loss']:.3f}")
PYEOF

if [ "$GPUS" -lt 2 ]; then
    echo "== nccl with 2 processes on $GPUS GPU (expected: one clear error)"
    TINYLM_BACKEND=nccl timeout 60 $PY -m torch.distributed.run --standalone --nproc-per-node 2 -m tinylm pretrain \
        $COMMON --out "$OUT_DIR/nccl" 2>&1 | grep "^error" | head -n 2
fi

echo "== the cost of accumulation: bf16, small preset, 200 steps, global batch 64"
for split in "64 1" "32 2" "16 4"; do
    set -- $split
    timeout 120 $PY -m tinylm pretrain data/corpus.jsonl --tokenizer "$OUT_DIR/tok" --preset small --max-steps 200 \
        --batch-size "$1" --grad-accum "$2" --quiet --overwrite --out "$OUT_DIR/accum-$2" 2>&1 | tail -n 1
done

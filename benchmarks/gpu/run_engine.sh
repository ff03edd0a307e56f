#!/usr/bin/env bash
# The engine on an offline GPU machine, in one call: the CUDA tests (`gpu` mark: backends vs
# transformers in bf16, graphs vs eager, swaps during graph replay, the Triton kernel), then
# benchmarks/engine_throughput.py --device cuda (llama3-8b, bf16, dummy weights, beside its
# memory and compute floors), then benchmarks/overlap.py on CUDA. Everything lands in $OUT.
#
#   benchmarks/gpu/run_engine.sh           on the GPU machine (reads the wheels in .whl/ if any)
#   benchmarks/gpu/run_engine.sh --cpu     dry run on CPU: same steps, tiny sizes, GPU tests skip
#
# Writes $OUT/machine.txt, $OUT/tests.log, $OUT/engine_throughput_cuda.json + .log,
# $OUT/overlap_cuda.json + .log and $OUT/summary.txt. OUT defaults to ./gpu-out; PYTHON to
# python3. Each step runs under `timeout`; a failing step does not stop the next ones.
set -uo pipefail

MODE=gpu
if [[ "${1:-}" == "--cpu" ]]; then MODE=cpu; shift; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$REPO/gpu-out}"
PYTHON="${PYTHON:-python3}"
TESTS_TIMEOUT_S="${TESTS_TIMEOUT_S:-240}"
THROUGHPUT_TIMEOUT_S="${THROUGHPUT_TIMEOUT_S:-300}"
OVERLAP_TIMEOUT_S="${OVERLAP_TIMEOUT_S:-240}"
mkdir -p "$OUT"
rm -f "$OUT/summary.txt"
cd "$REPO" || exit 1

# Only the engine and its tests run here: grpc/protobuf come from the carried wheels when
# there are any (some engine modules import the generated protos), else from $PYTHON.
SITE=/tmp/fastswitch-site
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    .whl/*.whl > "$OUT/install.log" 2>&1 || echo "wheel install failed: $OUT/install.log"
fi
export PYTHONPATH="$SITE:$REPO/lib:$REPO/services/worker:$REPO/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

{
  date -u
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  "$PYTHON" -c 'import triton; print("triton", triton.__version__)' 2>&1 || true
  "$PYTHON" -c 'import flashinfer; print("flashinfer", flashinfer.__version__)' 2>&1 | tail -1
  nproc; free -g | head -2
} > "$OUT/machine.txt" 2>&1

STATUS=0
run_step() {  # name timeout_s command...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" >> "$OUT/summary.txt"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc" >> "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log" >> "$OUT/summary.txt"
  [[ $rc -eq 0 ]] || STATUS=$rc
}

# The repo's root conftest needs the full dev environment (redis, cryptography, hypothesis);
# the engine's CUDA tests build their own fixtures, so conftests are not loaded here.
run_step tests "$TESTS_TIMEOUT_S" "$PYTHON" -m pytest -q -p no:cacheprovider --noconftest \
  -o addopts="--import-mode=importlib" \
  tests/services/worker/engine/test_engine_cuda.py \
  tests/services/worker/engine/test_attention_triton.py \
  tests/services/worker/engine/test_cuda_graphs.py \
  tests/services/worker/engine/test_sampler_batched.py

if [[ "$MODE" == gpu ]]; then
  THROUGHPUT_ARGS=(--device cuda --out "$OUT/engine_throughput_cuda.json")
  OVERLAP_ARGS=(--device cuda --out "$OUT/overlap_cuda.json")
else
  # Dry run: the same commands at sizes a CPU finishes in seconds.
  THROUGHPUT_ARGS=(--quick --out "$OUT/engine_throughput_cpu_dry.json")
  OVERLAP_ARGS=(--quick --num-steps 4 --rounds 1 --out "$OUT/overlap_cpu_dry.json")
fi
run_step engine_throughput "$THROUGHPUT_TIMEOUT_S" "$PYTHON" benchmarks/engine_throughput.py \
  "${THROUGHPUT_ARGS[@]}"
if "$PYTHON" benchmarks/overlap.py --help 2>/dev/null | grep -q -- "--device" || [[ "$MODE" == cpu ]]; then
  run_step overlap "$OVERLAP_TIMEOUT_S" "$PYTHON" benchmarks/overlap.py "${OVERLAP_ARGS[@]}"
else
  echo "== overlap: skipped (benchmarks/overlap.py has no --device option)" >> "$OUT/summary.txt"
fi
tail -n 80 "$OUT/summary.txt"
echo "exit status $STATUS; results in $OUT"
exit "$STATUS"

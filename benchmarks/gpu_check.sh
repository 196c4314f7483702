#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, in one command: the CUDA tests (the Triton kernels
# compiled for the GPU, and every loss on CUDA tensors), the CUDA benchmark with a time
# limit, then docs/benchmarks.md regenerated with its CUDA section.
#
#     benchmarks/gpu_check.sh                # PYTHON=/path/to/python to choose the interpreter
#     BENCH_LIMIT=200 benchmarks/gpu_check.sh  # start no new benchmark case after 200 s
#
# Needs torch's CUDA build with its Triton, and probloss installed with its test extra
# (pip install -e ".[torch,test]"); Liger-Kernel is compared when it is installed
# (pip install liger-kernel).  Without a GPU it says so and stops with status 1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export TRITON_INTERPRET=0  # compiled kernels, not Triton's interpreter
"$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: no CUDA device here')"
echo "== CUDA tests"
timeout 900 "$PYTHON" -m pytest -q -m gpu tests/backends/test_triton.py tests/test_gpu.py
echo "== CUDA benchmark"
timeout 1200 "$PYTHON" benchmarks/bench_cuda.py --repeats 10 --warmup 3 --time-limit "${BENCH_LIMIT:-420}"
echo "== report"
"$PYTHON" benchmarks/report.py

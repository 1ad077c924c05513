#!/usr/bin/env bash
# From a bare GPU machine with ../shared beside the project to README's GPU table, in one command:
#   bash benchmarks/gpu_check.sh [gpu_check.py's options, e.g. --max-epochs 3 --minutes 2]
# Uses the Python that already has torch and torchvision (else installs requirements.txt into .venv), writes
# CIFAR-10 from ../shared into data/ once, runs benchmarks/gpu_check.py on it, and keeps its whole output,
# the Markdown table and the JSON line, in benchmarks/results/gpu_check.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}

if ! python3 -c "import torch, torchvision, tqdm, matplotlib, ipywidgets, pygments" 2>/dev/null; then
  [ -d .venv ] || python3 -m venv .venv
  source .venv/bin/activate
  pip install -q -r requirements.txt
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the package, also where it is not installed
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU is visible to PyTorch'"

if [ ! -f data/cifar-10-batches-py/test_batch ]; then
  python3 "$shared/tools/cifar_jpeg_to_batches.py" --out data
fi
mkdir -p benchmarks/results
PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --data data "$@" 2>&1 | tee benchmarks/results/gpu_check.txt

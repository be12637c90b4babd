#!/usr/bin/env bash
# First, short call on the GPU machine: environment check and per-epoch cost of each backbone.
set -u
export PYTHONPATH=src AGAD_DATA_DIR=$PWD/data PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, sklearn, safetensors, tqdm, matplotlib; print('torch', torch.__version__, torch.cuda.is_available())"
for b in naive unetpp; do
  s=$SECONDS; python3 -m agad train --data fashion-mnist --normal-class 0 --backbone $b --epochs 2 \
      --no-progress --out /tmp/smoke-$b --force 2>&1 | tail -3; echo "$b wall $((SECONDS - s))s"
  python3 -c "import json; print('$b', [round(json.loads(l)['seconds'], 2) for l in open('/tmp/smoke-$b/history.jsonl')])"
done
python3 -m agad evaluate /tmp/smoke-naive --json

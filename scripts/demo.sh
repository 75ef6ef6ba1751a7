#!/usr/bin/env bash
# The main job: `bertc optimize` on the embedded all-MiniLM-L6-v2 and SST-2, quick preset (about 5 minutes, budget 15, on
# 2 CPU cores): fine-tune, try pruned/distilled candidates, export to fused ONNX, quantize, bench side by side,
# report, and ship the fastest model within 1 accuracy point to runs/demo/best/.
# Uses ../shared/data/sst2 when it is there, else fetches GLUE SST-2 from the Hub once (needs a network).
set -euo pipefail
VENV=${VENV:-.venv}
SST2=${SST2:-../shared/data/sst2}
OUT=${OUT:-runs/demo}

if [ ! -f "$SST2/train.tsv" ]; then
  echo "SST-2 not found at $SST2: fetching GLUE SST-2 from the Hub into runs/data/sst2"
  SST2=runs/data/sst2
  [ -f "$SST2/train.tsv" ] || "$VENV/bin/python" scripts/fetch_sst2.py "$SST2"
fi
"$VENV/bin/bertc" optimize --train "$SST2" --preset quick --out "$OUT" --overwrite

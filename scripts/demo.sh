#!/usr/bin/env bash
# The main job on the embedded all-MiniLM-L6-v2 and SST-2: fine-tune, then evaluate on the GLUE dev set.
# Uses ../shared/data/sst2 when it is there, else GLUE SST-2 from the Hub (needs a network connection).
set -euo pipefail
VENV=${VENV:-.venv}
SST2=${SST2:-../shared/data/sst2}
BERTC="$VENV/bin/bertc"
OUT=${OUT:-runs/demo}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}

if [ -f "$SST2/train.tsv" ]; then
  TRAIN="$SST2"; EVAL_DATA="$SST2/test.tsv"; EVAL_SPLIT=test
else
  echo "SST-2 not found at $SST2: using glue/sst2 from the Hub"
  TRAIN=glue/sst2; EVAL_DATA=glue/sst2; EVAL_SPLIT=validation
fi

mkdir -p "$OUT"
# Quick preset: 4,000 sentences, one epoch (a few minutes on 2 CPU cores).
"$BERTC" finetune --train "$TRAIN" --max-train-samples 4000 --max-eval-samples 1000 --epochs 1 \
  --out "$OUT/finetuned" --overwrite
"$BERTC" evaluate "$OUT/finetuned" --data "$EVAL_DATA" --split "$EVAL_SPLIT" --json "$OUT/evaluation.json"
echo "artifacts and results are in $OUT"

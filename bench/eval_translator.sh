#!/usr/bin/env bash
# Benchmark (not a test): translate the 200 CAMUS validation images from a look (stand-in / unseen) with MODEL and evaluate them
# against real validation images, paired with their truth. Usage: bench/eval_translator.sh MODEL TAG LOOK (LOOK: stand-in, unseen, family or held-out; needs data/camus224-128)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1 TAG=$2 LOOK=$3
B=out/bench-translate
[ -d $B/$LOOK ] || .venv/bin/python bench/stand_in_scanner.py --data data/camus224-128 --split val --look $LOOK --out $B/$LOOK
[ -d $B/real128 ] || .venv/bin/python bench/stand_in_scanner.py --data data/camus224-128 --split val --look none --out $B/real128
rm -rf $B/$TAG-$LOOK $B/$TAG-$LOOK-report
.venv/bin/echosynth translate --model $MODEL --images $B/$LOOK/images --labels $B/$LOOK/labels --out $B/$TAG-$LOOK --threads 2
.venv/bin/echosynth evaluate --real data/camus224-128:val --synthetic $B/$TAG-$LOOK --paired-with $B/real128/images \
  --segmenter segmenter-camus --out $B/$TAG-$LOOK-report --threads 2

#!/usr/bin/env bash
# The README's main command: set up, then the offline demo end to end — a new training project
# (mmgen init), the audio modality generated from its spec, synthetic tone clips with a
# word-level tokenizer, training on packed batches, held-out exact-match accuracy, then the
# trained model exported and used: predictions on the held-out split and their scores.
#
#   bash scripts/demo.sh              # the full demo (a few minutes on 2 CPU cores)
#   DEMO_SIZE=ci bash scripts/demo.sh # the reduced size CI runs (fewer clips and steps)
#
# The project is written to build/demo (replaced on every run): its runs/demo/ holds the
# metrics, the loss/accuracy plot (metrics.png), checkpoints and the trained model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MMGEN="$PWD/.venv/bin/mmgen"
"$MMGEN" doctor
"$MMGEN" bench merge --small

case "${DEMO_SIZE:-full}" in
    full) data=(--train 3000 --eval 200 --test 200); train=() ;;
    ci) data=(--train 1000 --eval 50 --test 100)
        train=(--set eval.every=null --set checkpoint.every=null) ;;
    *) echo "DEMO_SIZE must be full or ci" >&2; exit 2 ;;
esac

rm -rf build/demo
mkdir -p build
start=$SECONDS
"$MMGEN" init build/demo
cd build/demo
"$MMGEN" new-modality audio
"$MMGEN" demo-data audio "${data[@]}"
"$MMGEN" train configs/train.yaml "${train[@]}"
# use the trained model: one shareable folder (model card included), answers to the held-out
# clips through it, and their scores (eval finds the predictions already written and scores them)
"$MMGEN" export runs/demo exports/demo
"$MMGEN" predict exports/demo data/demo-audio/test.jsonl -o eval/test/predictions.jsonl
"$MMGEN" eval exports/demo data/demo-audio/test.jsonl -o eval/test -m exact_match -m token_f1
echo "demo finished in $((SECONDS - start)) s; curves: build/demo/runs/demo/metrics.png"

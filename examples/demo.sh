#!/bin/sh
# make demo: optimize a system prompt on the embedded models, then measure it on held-out seed queries the
# search never saw (initial prompt vs optimized prompt with its examples, paired difference with a 95% CI),
# and write the search report. Extra arguments go to every drpo command (e.g. --local-model smollm2-135m).
set -e
DRPO=${DRPO:-drpo}
CONFIG=${CONFIG:-examples/demo.yaml}
RUNS=${RUNS:-drpo_runs}
ID=demo-$(date +%Y%m%d-%H%M%S)
$DRPO optimize --config "$CONFIG" --run-id "$ID" --runs-dir "$RUNS" "$@"
$DRPO eval run --config "$CONFIG" --runs-dir "$RUNS" --run-id "$ID-held-out" \
  --queries "$RUNS/$ID/held_out.jsonl" --system initial=base --system optimized=run:"$ID" "$@"
$DRPO report "$ID" --runs-dir "$RUNS"

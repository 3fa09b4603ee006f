#!/bin/sh
# make demo: optimize a system prompt on the embedded models, then measure it on held-out seed queries the
# search never saw: the initial prompt against the optimized one, both with the run's retrieved examples, so
# the difference is the prompt's. Extra arguments go to every drpo command (e.g. --local-model smollm2-135m).
set -e
DRPO=${DRPO:-drpo}
CONFIG=${CONFIG:-examples/demo.yaml}
RUNS=${RUNS:-drpo_runs}
ID=demo-$(date +%Y%m%d-%H%M%S)
$DRPO optimize --config "$CONFIG" --run-id "$ID" --runs-dir "$RUNS" "$@"
$DRPO eval run --config "$CONFIG" --runs-dir "$RUNS" --run-id "$ID-held-out" \
  --queries "$RUNS/$ID/held_out.jsonl" --system initial=run:"$ID":initial --system optimized=run:"$ID" "$@"
$DRPO report "$ID" --runs-dir "$RUNS" >/dev/null
$DRPO summary "$ID" --evaluation "$ID-held-out" --runs-dir "$RUNS"

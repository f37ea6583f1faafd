#!/usr/bin/env bash
# How well the planner predicts speed: for each model, each link and each
# layout (one node, tensor 2 and 3, pipeline 2 and 3, local nodes of one
# thread each), `shardlab bench --json` ROUNDS times; prints every run's
# measured and predicted decode and prefill, then a table of medians with
# the error, and whether the predicted order of the layouts matches the
# measured order wherever the measured rates differ by more than 15%.
#
#   bench/predict.sh [ROUNDS] [MODEL ...]     (defaults 3, smollm2 and the
#                                              8b synthetic, made if missing)
#
# LINKS (default "loopback 1gbe wifi"), SHAPES (default "1:single
# 2:tensor 3:tensor 2:pipeline 3:pipeline") and OUT (a JSON-lines file,
# default bench/results/predict-DATE.jsonl) may be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin shardlab
bin=$PWD/target/release/shardlab
rounds=${1:-3}
shift || true
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    eight=${TMPDIR:-/tmp}/shardlab-8b-q4_0.gguf
    [ -f "$eight" ] || "$bin" synth --preset 8b --quant q4_0 --out "$eight" >/dev/null
    models=(smollm2 "$eight")
fi
links=(${LINKS:-loopback 1gbe wifi})
out=${OUT:-bench/results/predict-$(date -u +%Y-%m-%d).jsonl}
: >"$out"

for model in "${models[@]}"; do
    case "$model" in
    smollm2) sizes=(--prompt-tokens 64 --gen 64) ;;
    *) sizes=(--prompt-tokens 16 --gen 16) ;;
    esac
    for link in "${links[@]}"; do
        link_flag=()
        [ "$link" = loopback ] || link_flag=(--link "$link")
        for shape in ${SHAPES:-1:single 2:tensor 3:tensor 2:pipeline 3:pipeline}; do
            set -- ${shape/:/ }
            for r in $(seq "$rounds"); do
                line=$("$bin" bench --model "$model" --nodes "local:$1" --layout "$2" \
                    "${link_flag[@]}" "${sizes[@]}" --no-probe --json 2>/dev/null | tail -n 1) || {
                    echo "$model $link $2 $1: the bench failed" >&2
                    continue
                }
                python3 - "$model" "$link" "$line" <<'PY' | tee -a "$out" >/dev/null
import json, os, sys
model, link, line = sys.argv[1], sys.argv[2], sys.argv[3]
full = json.loads(line)
keep = ["layout", "nodes", "threads", "prompt_tokens", "gen_tokens", "parallel", "wire",
        "prefill_tok_s", "decode_tok_s", "ttft_s", "predicted_prefill_tok_s",
        "predicted_decode_tok_s", "predicted_ttft_s", "prefill_error", "decode_error"]
row = {"model": os.path.basename(model), "link_name": link}
row.update({k: full.get(k) for k in keep})
print(json.dumps(row))
PY
                python3 -c "
import json, sys
r = json.loads(open('$out').read().splitlines()[-1])
print(f\"{r['model']:>22} {r['link_name']:>8} {r['layout']:>10} x{r['nodes']}  decode {r['decode_tok_s']:8.2f} predicted {r['predicted_decode_tok_s']:8.2f}  prefill {r['prefill_tok_s']:8.1f} predicted {r['predicted_prefill_tok_s']:8.1f}\")"
            done
        done
    done
done
echo
python3 bench/predict_table.py "$out"

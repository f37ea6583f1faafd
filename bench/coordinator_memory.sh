#!/usr/bin/env bash
# What the coordinator holds while it loads a cluster: its peak resident
# memory (RssAnon + RssFile, sampled every 0.1 s, so a brief peak can be
# missed by up to one sample) and the wall time of a short run, for each
# binary given, alternating (A B A B ...), REPS rounds.
#   - each run is `shardlab bench -m FILE --nodes local:2 --layout tensor
#     --prompt-tokens 8 --gen 4 --no-probe` with an empty SHARDLAB_HOME, so
#     the nodes' caches are cold and every slice is streamed
#   - the file is read once into the page cache first
#   - the nodes' own "loaded N MiB of weights in S s" lines are printed
#     beside the coordinator's figures
#
# Usage: bench/coordinator_memory.sh FILE BIN... [REPS=3 in the environment]
# Example (before and after a change, two release builds):
#   REPS=3 bench/coordinator_memory.sh ~/.cache/shardlab/synth/llama-8b-q4_0.gguf \
#       /tmp/shardlab-before /tmp/shardlab-after
set -euo pipefail
file=${1:?usage: bench/coordinator_memory.sh FILE BIN...}
shift
[ $# -ge 1 ] || { echo "give at least one shardlab binary" >&2; exit 2; }
[ -f "$file" ] || { echo "no such model file: $file" >&2; exit 2; }
reps=${REPS:-3}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

one_run() { # one_run BIN: prints peak, anon and file MiB, wall seconds, node lines
  local bin=$1 home="$scratch/home" out="$scratch/out"
  rm -rf "$home"; mkdir -p "$home"
  local start; start=$(date +%s.%N)
  SHARDLAB_HOME=$home "$bin" bench -m "$file" --nodes local:2 --layout tensor \
    --prompt-tokens 8 --gen 4 --no-probe >"$out" 2>&1 &
  local pid=$! peak=0 peak_anon=0 peak_file=0 anon file
  while kill -0 "$pid" 2>/dev/null; do
    read -r anon file < <(awk '/^RssAnon/{a=$2} /^RssFile/{f=$2} END{print a+0, f+0}' \
      "/proc/$pid/status" 2>/dev/null || echo "0 0")
    if [ $((anon + file)) -gt "$peak" ]; then
      peak=$((anon + file)); peak_anon=$anon; peak_file=$file
    fi
    sleep 0.1
  done
  local rc=0; wait "$pid" || rc=$?
  local wall; wall=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  if [ "$rc" -ne 0 ]; then
    echo "$bin failed (exit $rc):" >&2; tail -5 "$out" >&2; return 1
  fi
  printf '%s  peak %5d MiB (anon %4d, file %4d)  wall %5.1f s  %s\n' \
    "$bin" $((peak / 1024)) $((peak_anon / 1024)) $((peak_file / 1024)) "$wall" \
    "$(tr '\r' '\n' <"$out" | grep -o 'loaded .* in [0-9.]* s' | sed 's/ of weights//' | paste -sd ';')"
}

cat "$file" >/dev/null
echo "# $(date -u +%FT%TZ) $(uname -n), $(nproc) cores; $file ($(du -h "$file" | cut -f1))"
for _ in $(seq "$reps"); do
  for bin in "$@"; do one_run "$bin"; done
done

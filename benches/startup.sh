#!/usr/bin/env bash
# Measures time from process start to the first 200 from /health, on a fresh and on a reused
# data dir. Usage: benches/startup.sh [path/to/zerostate] (default: target/release/zerostate).
set -euo pipefail
bin="${1:-target/release/zerostate}"
port="${PORT:-18799}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

measure() {
    local label="$1"; shift
    local start end pid
    start=$(date +%s%N)
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir/data" "$@" >"$dir/log" 2>&1 &
    pid=$!
    until curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { cat "$dir/log"; exit 1; }
        sleep 0.005
    done
    end=$(date +%s%N)
    awk -v l="$label" -v ns="$((end - start))" 'BEGIN { printf "%-28s %6.1f ms\n", l, ns / 1e6 }'
    kill -TERM "$pid"
    wait "$pid"
}

measure "fresh data dir"
measure "existing data dir"
measure "existing data dir, --demo" --demo

#!/usr/bin/env bash
# Time from process start to the first 200 from /ready of a server keeping its modules in S3
# (a moto_server started here) with AGENTS agents (default 100, at most 999): warm (the
# compiled-code cache in the data dir is kept: nothing is read from S3 or compiled) and cold
# (the cache deleted: every module is read from S3, hash-checked and compiled again).
# Usage: benches/s3_startup.sh [path/to/zerostate] (default: target/release/zerostate).
# Needs moto_server (`python3 -m pip install 'moto[server]'`) and curl.
# 2026-12, 2 cores, release build, 100 agents of 53 KB: warm 93 ms, cold 9.7 s (the compiles).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/zerostate}"
agents="${AGENTS:-100}"
port="${PORT:-18798}"
s3_port="${S3_PORT:-18797}"
dir="$(mktemp -d)"
base="http://127.0.0.1:$port"
pid=""

moto_server -H 127.0.0.1 -p "$s3_port" >"$dir/moto.log" 2>&1 &
moto=$!
trap 'kill "$moto" ${pid:+"$pid"} 2>/dev/null || true; rm -rf "$dir"' EXIT
until curl -s -o /dev/null "http://127.0.0.1:$s3_port/"; do sleep 0.05; done
curl -fs -o /dev/null -X PUT "http://127.0.0.1:$s3_port/bench"

export ZEROSTATE_BLOBS__BACKEND=s3
export ZEROSTATE_BLOBS__ENDPOINT="http://127.0.0.1:$s3_port"
export ZEROSTATE_BLOBS__BUCKET=bench
export ZEROSTATE_BLOBS__PREFIX=startup
export ZEROSTATE_BLOBS__ACCESS_KEY_ID=bench
export ZEROSTATE_BLOBS__SECRET_ACCESS_KEY=bench-secret
export ZEROSTATE_RATE_LIMITS__ENABLED=false
export ZEROSTATE_QUOTAS__AGENTS=0

start() {
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir/data" >"$dir/log" 2>&1 &
    pid=$!
}

stop() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
}

wait_ready() {
    until curl -fs -o "$dir/ready" "$base/ready" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$dir/log"; exit 1; }
        sleep 0.005
    done
}

measure() {
    local label="$1" start end
    start=$(date +%s%N)
    start
    wait_ready
    end=$(date +%s%N)
    awk -v l="$label" -v ns="$((end - start))" -v r="$(cat "$dir/ready")" \
        'BEGIN { printf "%-34s %9.1f ms   %s\n", l, ns / 1e6, r }'
    stop
}

# Seed: one account, AGENTS agents with distinct modules (a demo agent with a numbered custom
# section appended, so each is its own blob and its own compiled code).
start
wait_ready
token=$(curl -fs -X POST "$base/api/v1/users/register" -H 'content-type: application/json' \
    -d '{"email":"bench@example.com","password":"correct horse battery","full_name":"Bench"}' |
    sed -E 's/.*"token":"([^"]+)".*/\1/')
for i in $(seq 1 "$agents"); do
    { cat assets/agents/data-analyzer/agent.wasm; printf '\x00\x07\x03pad%03d' "$i"; } >"$dir/a.wasm"
    curl -fs -o /dev/null -H "authorization: Bearer $token" -H 'prefer: wait=60' \
        -F "wasm_binary=@$dir/a.wasm" -F "name=bench-$i" -F version=1.0.0 \
        -F capabilities=bench -F price=0 "$base/api/v1/agents/upload"
done
stop
echo "$agents agents, modules in S3 (moto at 127.0.0.1:$s3_port), binary $bin"

measure "warm (compiled cache kept)"
rm -rf "$dir/data/modules"
measure "cold (compiled cache deleted)"
measure "warm again"

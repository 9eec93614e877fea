#!/usr/bin/env bash
# Rebuilds every demo agent (each directory containing agent.c) to agent.wasm.
# Requires clang with the wasm32-wasi target, wasi-libc and lld
# (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
CC="${CC:-clang}"

built=0
for src in */agent.c; do
    [ -e "$src" ] || continue
    dir="$(dirname "$src")"
    "$CC" --target=wasm32-wasi -O2 -s -Wall -Wextra -o "$dir/agent.wasm" "$src"
    echo "built $dir/agent.wasm ($(wc -c < "$dir/agent.wasm") bytes)"
    built=$((built + 1))
done

if [ "$built" -eq 0 ]; then
    echo "no agents found (expected */agent.c)" >&2
    exit 1
fi

#!/usr/bin/env bash
# Builds the agent examples of docs/agents.md to their committed agent.wasm.
# C: clang with the wasm32-wasi target, lld and wasi-libc
#    (Debian: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32).
# Zig: Zig 0.17, as `zig` or from PyPI (pip install ziglang==0.17.1, run as python3 -m ziglang).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

clang --target=wasm32-wasi -O2 -s -Wall -Wextra -o word-count-c/agent.wasm word-count-c/agent.c

if command -v zig >/dev/null; then ZIG=(zig); else ZIG=(python3 -m ziglang); fi
(cd word-count-zig &&
    "${ZIG[@]}" build-exe -target wasm32-wasi -O ReleaseSmall -fstrip -femit-bin=agent.wasm agent.zig)

for wasm in */agent.wasm; do echo "built $wasm ($(wc -c < "$wasm") bytes)"; done

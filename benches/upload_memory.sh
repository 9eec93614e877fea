#!/usr/bin/env bash
# Peak server memory while big uploads arrive at once: starts BINARY on a fresh data dir, posts
# UPLOADS modules of MIB MiB each concurrently (valid modules carrying a custom section, each
# different so nothing is shared), and reports the server's resident memory before and its
# high-water mark (VmHWM) after every build has ended.
# Run: bash benches/upload_memory.sh [BINARY] [UPLOADS] [MIB]
# (defaults target/release/zerostate, 6, 100). Run it on two builds to compare them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-target/release/zerostate}")"
uploads="${2:-6}"
mib="${3:-100}"

work="$(mktemp -d)"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# A module that does nothing, with a custom section of MIB MiB whose first bytes make it unique.
python3 - "$work" "$uploads" "$mib" <<'EOF'
import sys
work, uploads, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def leb(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)

def section(id, body):
    return bytes([id]) + leb(len(body)) + body

name = lambda s: leb(len(s)) + s.encode()
core = (b"\0asm\1\0\0\0"
        + section(1, b"\x01\x60\x00\x00")                       # type () -> ()
        + section(3, b"\x01\x00")                               # one function of it
        + section(5, b"\x01\x00\x01")                           # memory, 1 page
        + section(7, b"\x02" + name("_start") + b"\x00\x00" + name("memory") + b"\x02\x00")
        + section(10, b"\x01\x02\x00\x0b"))                     # an empty body
for i in range(uploads):
    payload = i.to_bytes(8, "little") + bytes(mib * 1024 * 1024 - 8)
    with open(f"{work}/m{i}.wasm", "wb") as f:
        f.write(core + section(0, name("payload") + payload))
EOF

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
# From the work dir, so that no config/zerostate.toml is read: every build runs on defaults.
(cd "$work" && exec "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --workers 1) \
    >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 300); do
    curl -sf "$base/ready" >/dev/null && break
    sleep 0.1
done
token="$(curl -sf "$base/api/v1/users/register" -H 'content-type: application/json' \
    -d '{"email":"big@example.com","password":"correct horse battery","full_name":"Big"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
rss() { awk -v k="$1:" '$1 == k { print int($2 / 1024) }' "/proc/$server/status"; }
before="$(rss VmRSS)"

started=$SECONDS
for i in $(seq 0 $((uploads - 1))); do
    curl -s -o /dev/null -w '%{http_code}\n' "$base/api/v1/agents/upload" \
        -H "authorization: Bearer $token" -H 'prefer: wait=60' \
        -F "wasm_binary=@$work/m$i.wasm" -F "name=big-$i" -F version=1.0.0 \
        -F capabilities=big -F price=0 >"$work/status$i" &
done
wait $(jobs -p | grep -v "^$server\$") 2>/dev/null || true
statuses="$(cat "$work"/status* | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
# The builds may still run after the answers (wait=60 caps the wait): wait for every agent.
for _ in $(seq 600); do
    ready="$(curl -s "$base/api/v1/agents?capability=big&limit=100" -H "authorization: Bearer $token" |
        python3 -c 'import json, sys; print(sum(a["status"] in ("ready", "rejected") for a in json.load(sys.stdin)["agents"]))')"
    [ "$ready" -ge "$uploads" ] && break
    sleep 0.5
done
echo "uploads: $uploads x $mib MiB at once; answers:$statuses built: $ready; $((SECONDS - started)) s"
echo "server memory: ${before} MiB resident before, ${uploads} uploads later peak (VmHWM) $(rss VmHWM) MiB"

#!/usr/bin/env bash
# Schemathesis (PyPI) against a live `zerostate serve`: generated requests for every operation
# of the server's OpenAPI document, checked for server errors and for answers the document does
# not allow (status code, content type, headers, body schema). Run by .ci/run after the tests,
# on the debug binary they built; settings in .ci/schemathesis.toml. Fails on any finding and
# prints the number of cases run.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
target="${CARGO_TARGET_DIR:-target}"
venv="$target/schemathesis-$SCHEMATHESIS_VERSION"

# ZS_BIN tests a binary built elsewhere (a shared target dir's may be another tree's).
bin="${ZS_BIN:-$target/debug/zerostate}"
[ -n "${ZS_BIN:-}" ] || cargo build --locked --quiet --bin zerostate
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

export ZS_PASSWORD="schemathesis admin password" ZS_SERVICE_TOKEN="schemathesis-service-token"
printf '%s\n' "$ZS_PASSWORD" |
    "$bin" user create --email admin@example.com --admin --password-stdin --data-dir "$work/data" >/dev/null
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export ZS_BASE="http://127.0.0.1:$port"
# The shipped limits stay on: the fuzzer's pace (~40 requests/s on one credential) is within
# them, and the 429s a sign-in flood earns are in the document.
ZEROSTATE_REALTIME__SERVICE_TOKEN="$ZS_SERVICE_TOKEN" \
    "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" --workers 2 >"$work/server.log" 2>&1 &
server=$!

# Waits for /ready, signs in the admin and makes the fixtures the path parameters point at.
fixtures="$("$venv/bin/python" - <<'EOF'
import os, sys, time
import requests

base, password = os.environ["ZS_BASE"], os.environ["ZS_PASSWORD"]
deadline = time.monotonic() + 60
while True:
    try:
        if requests.get(f"{base}/ready", timeout=5).status_code == 200:
            break
    except requests.ConnectionError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the server did not become ready within 60 s")
    time.sleep(0.2)

def ok(response, status):
    if response.status_code != status:
        sys.exit(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response.json()

login = ok(requests.post(f"{base}/api/v1/users/login", json={"email": "admin@example.com", "password": password}), 200)
auth = {"Authorization": f"Bearer {login['token']}"}
module = open("assets/agents/text-stats/agent.wasm", "rb").read()

def publish(name):
    files = {"wasm_binary": ("agent.wasm", module), "name": (None, name), "capabilities": (None, "text"), "price": (None, "0")}
    agent = ok(requests.post(f"{base}/api/v1/agents/upload", files=files, headers={**auth, "Prefer": "wait=60"}), 201)
    return agent["agent_id"]

agent, doomed = publish("Fuzzed"), publish("Fuzzed and deleted")
task = ok(requests.post(f"{base}/api/v1/tasks/submit", json={"query": "a few words", "agent_id": agent, "budget": 1},
                        headers={**auth, "Prefer": "wait=60"}), 200)
key = ok(requests.post(f"{base}/api/v1/users/me/api-keys", json={"name": "fuzzed", "scopes": ["tasks:read"]}, headers=auth), 201)
# Sign-out ends the session it is sent with: it gets a session of its own.
doomed_session = ok(requests.post(f"{base}/api/v1/users/login", json={"email": "admin@example.com", "password": password}), 200)
print(f"export ZS_TOKEN={login['token']} ZS_USER={login['user']['id']} ZS_AGENT={agent} "
      f"ZS_DOOMED_AGENT={doomed} ZS_TASK={task['id']} ZS_KEY={key['id']} "
      f"ZS_DOOMED_TOKEN={doomed_session['token']}")
EOF
)" || { tail -n 50 "$work/server.log"; exit 1; }
eval "$fixtures"

status=0
"$venv/bin/schemathesis" --config-file .ci/schemathesis.toml --no-color run "$ZS_BASE/api/v1/openapi.json" \
    --checks "$CHECKS" --phases examples,coverage,fuzzing || status=$?
if ! kill -0 "$server" 2>/dev/null; then
    echo "the server died during the run" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "--- server errors logged during the run:" >&2
    grep -E "ERROR|panicked" "$work/server.log" | tail -n 50 >&2 || true
fi
exit "$status"

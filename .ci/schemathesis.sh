#!/usr/bin/env bash
# Schemathesis over the control API's own OpenAPI document: the daemon is
# built and started on free loopback ports (with a token, so auth is
# exercised), schemathesis (PyPI, in a venv) generates requests from
# /v1/openapi.json for a bounded number of examples and a bounded time,
# and every check runs: server errors, undocumented statuses, response
# shapes, data the spec allows but the server refuses (and the reverse).
# Exits non-zero on any finding. Needs python3 and python3-venv. One
# worker: hypothesis's lambda-source cache is not thread-safe and threads
# made schemathesis 4.32 fail with "AST constructor recursion depth
# mismatch" (an error of the tool, not a finding).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="${SCHEMATHESIS_VENV:-$target/schemathesis-venv}"
examples="${SCHEMATHESIS_EXAMPLES:-40}"
max_time="${SCHEMATHESIS_SECONDS:-180}"

if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4.3,<5'
fi
"$venv/bin/schemathesis" --version

cargo build --quiet --bin sluice
sluice="$target/debug/sluice"

mkdir -p "$target"
work=$(mktemp -d "$target/schemathesis-run.XXXXXX")
daemon_pid=""
cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid"
        wait "$daemon_pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

token="schemathesis-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$token" >"$work/token"
cat >"$work/sluice.toml" <<TOML
[control]
listen = "127.0.0.1:0"
token_file = "$work/token"

[media]
listen = "127.0.0.1:0"
workers = 1
pin_cores = false

[policy]
e2ee = "all"
max_meetings = 100000
max_participants_per_meeting = 100000
max_participants_per_node = 1000000

[sip]
enabled = false

[log]
level = "warn"
TOML
"$sluice" check-config "$work/sluice.toml"

"$sluice" run --config "$work/sluice.toml" 2>"$work/sluice.log" &
daemon_pid=$!
api=""
for _ in $(seq 1 100); do
    api=$(sed -n 's|.*control API on http://\([0-9.:]*\),.*|\1|p' "$work/sluice.log" | head -n1)
    [ -n "$api" ] && break
    kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/sluice.log"; exit 1; }
    sleep 0.2
done
[ -n "$api" ] || { echo "sluice did not start:"; cat "$work/sluice.log"; exit 1; }
echo "sluice control API on http://$api"

status=0
"$venv/bin/schemathesis" run "http://$api/v1/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $token" \
    --max-examples "$examples" \
    --max-time "$max_time" \
    --seed 16 \
    --workers 1 \
    --request-timeout 10 \
    --generation-database none \
    --no-color \
    --report junit --report-dir "$target/schemathesis-report" || status=$?

if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "sluice died during the run:"
    cat "$work/sluice.log"
    status=1
fi
exit "$status"

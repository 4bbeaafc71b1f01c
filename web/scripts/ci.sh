#!/usr/bin/env bash
# The web console's CI: unit tests, build reproducibility, and the browser end-to-end run
# against a real Headwater serving the demo data. Called from .ci/run as `bash web/scripts/ci.sh`.
#
#   HEADWATER_BIN   the headwater command (default: <repo>/.venv/bin/headwater, else PATH)
#   E2E_SKIP_WRITES=1  skip the e2e write steps (said in the output)
#   HEADWATER_URL   use an already running server instead of starting one
set -euo pipefail

web="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo="$(cd "$web/.." && pwd)"
cd "$web"

echo "== web: npm ci"
npm ci --no-audit --no-fund --loglevel=error

echo "== web: unit tests (vitest)"
HEADWATER_PYTHON="${HEADWATER_PYTHON:-$repo/.venv/bin/python}" npm test

echo "== web: the committed build in src/headwater/console matches a fresh build"
npm run check-dist
npm run --silent size

if [ ! -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  echo "== web: installing Debian's chromium for the e2e run"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

server_pid=""
workdir=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$workdir" ]; then rm -rf "$workdir"; fi
}
trap cleanup EXIT

if [ -z "${HEADWATER_URL:-}" ]; then
  bin="${HEADWATER_BIN:-$repo/.venv/bin/headwater}"
  [ -x "$bin" ] || bin="$(command -v headwater)"
  port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
  workdir="$(mktemp -d)"
  echo "== web: starting $bin serve --demo --port $port (in $workdir)"
  (cd "$workdir" && exec "$bin" serve --demo --port "$port") >"$workdir/server.log" 2>&1 &
  server_pid=$!
  export HEADWATER_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "$HEADWATER_URL/-/console/" 2>/dev/null; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then cat "$workdir/server.log"; echo "headwater exited"; exit 1; fi
    sleep 0.5
  done
fi

echo "== web: e2e against $HEADWATER_URL"
status=0
npm run --silent e2e || status=$?
if [ "$status" -ne 0 ] && [ -n "$workdir" ]; then
  echo "-- server log (last 40 lines)"; tail -n 40 "$workdir/server.log"
fi
exit "$status"

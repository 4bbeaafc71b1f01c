#!/usr/bin/env bash
# Install everything and run every check: lint, types, Python tests (unit, integration
# against real PostgreSQL), and the web console's tests. `.ci/run` runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]'

# the @supabase/postgrest-js scenarios (tests/clients) run with node; npm ci only when the
# lock file changed since the last install (without npm, pytest skips them, or fails under CI)
if command -v npm >/dev/null && { [ ! -f tests/clients/js/node_modules/.package-lock.json ] \
   || [ tests/clients/js/package-lock.json -nt tests/clients/js/node_modules/.package-lock.json ]; }; then
  echo "== npm ci (tests/clients/js)"
  npm ci --prefix tests/clients/js --no-audit --no-fund --loglevel=error
fi

echo "== ruff"; .venv/bin/ruff check src tests bench
echo "== mypy"; .venv/bin/mypy
echo "== import contracts"; .venv/bin/lint-imports --no-cache
echo "== pytest"; .venv/bin/python -m pytest -q -p no:cacheprovider "$@"

echo "== web console"
HEADWATER_PYTHON="$PWD/.venv/bin/python" bash web/scripts/ci.sh

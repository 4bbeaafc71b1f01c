#!/usr/bin/env bash
# The web console: unit tests, a check that the shipped build matches the source, and the
# end-to-end run in headless Chromium against a real Headwater on the demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
(cd web && npm ci --no-audit --no-fund --loglevel=error)
(cd web && npm test)
(cd web && npm run check-dist)
if [ "${HEADWATER_SKIP_E2E:-}" = "1" ]; then
  echo "end-to-end tests skipped (HEADWATER_SKIP_E2E=1)"
  exit 0
fi
.venv/bin/python scripts/e2e.py

"""Running the ``@supabase/postgrest-js`` scenarios (``tests/clients/js``) with node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).parent / "js"
CI = os.environ.get("CI") == "true"


def _missing(what: str) -> None:
    if CI:
        pytest.fail(f"{what} (required under CI=true)")
    pytest.skip(what)


def ensure_installed() -> str:
    """The path of node, with the scenario package's dependencies installed (``npm ci``
    once, as ``scripts/test.sh`` does); skip without node and npm, or fail under CI."""
    node = shutil.which("node")
    if node is None:
        _missing("node is not installed: the @supabase/postgrest-js scenarios need Node.js 20+")
    assert node is not None
    if not (JS_DIR / "node_modules" / "@supabase" / "postgrest-js").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            _missing("npm is not installed: cannot install @supabase/postgrest-js")
        assert npm is not None
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error",
                               "--prefix", str(JS_DIR)], capture_output=True, text=True,
                              timeout=300, check=False)
        if done.returncode != 0:
            _missing("npm ci in tests/clients/js failed: " + done.stderr[-2000:])
    return node


def run_scenarios(node: str, url: str, *names: str) -> dict[str, Any]:
    """One node process for the whole batch: ``{scenario: {step: result}}``."""
    done = subprocess.run([node, str(JS_DIR / "run.mjs"), url, *names], capture_output=True,
                          text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"node run.mjs exited {done.returncode}: {done.stderr[-4000:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    return out

"""``serve``'s runtime directory: a killed server's is swept by the next one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from headwater.cli import _sweep_runtime_dirs


def _dir(owner: int | None, age: float) -> Path:
    path = Path(tempfile.mkdtemp(prefix="headwater-serve-"))
    (path / "metrics").mkdir()
    if owner is not None:
        (path / "owner").write_text(str(owner))
    old = path.stat().st_mtime - age
    os.utime(path, (old, old))
    return path


def test_a_dead_owners_directory_is_removed_and_no_other() -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(gone.stdout)
    killed = _dir(dead, 120)
    young = _dir(dead, 0)  # may be a server still starting
    alive = _dir(os.getpid(), 120)
    try:
        _sweep_runtime_dirs()
        assert not killed.exists()
        assert young.exists()
        assert alive.exists()
    finally:
        for p in (killed, young, alive):
            shutil.rmtree(p, ignore_errors=True)

"""``--workers auto``: the cores this process may use, from affinity and cgroup quotas."""

from __future__ import annotations

import os
from pathlib import Path

from headwater.cores import available_cores, cgroup_quota


def _v2(tmp: Path, cpu_max: str | None, parent_max: str | None = None) -> tuple[Path, Path]:
    leaf = tmp / "cg" / "app" / "svc"
    leaf.mkdir(parents=True)
    if cpu_max is not None:
        (leaf / "cpu.max").write_text(cpu_max + "\n")
    if parent_max is not None:
        (leaf.parent / "cpu.max").write_text(parent_max + "\n")
    proc = tmp / "cgroup"
    proc.write_text("0::/app/svc\n")
    return tmp / "cg", proc


def test_v2_quota_is_the_tightest_on_the_path(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, "150000 100000", parent_max="300000 100000")
    assert cgroup_quota(root, proc) == 1.5


def test_v2_without_a_quota(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, "max 100000")
    assert cgroup_quota(root, proc) is None


def test_v1_cfs_quota(tmp_path: Path) -> None:
    d = tmp_path / "cg" / "cpu,cpuacct" / "docker" / "x"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("250000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/docker/x\n3:cpu,cpuacct:/docker/x\n")
    assert cgroup_quota(tmp_path / "cg", proc) == 2.5
    (d / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_quota(tmp_path / "cg", proc) is None


def test_available_cores_rounds_a_quota_down_and_never_below_one(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    root, proc = _v2(tmp_path, "50000 100000")  # half a CPU
    cores = available_cores(root, proc)
    assert cores.count == 1
    assert "quota 0.5 CPUs" in cores.reason or affinity == 1
    none_root, none_proc = tmp_path / "nothing", tmp_path / "missing"
    plain = available_cores(none_root, none_proc)
    assert plain.count == affinity
    assert plain.reason.startswith(f"{affinity} core")

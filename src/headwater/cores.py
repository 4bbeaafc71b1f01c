"""How many cores this process may really use: what ``--workers auto`` starts.

``os.cpu_count()`` counts the host's cores, which a container or a ``taskset`` does not give
us: the answer is the CPU affinity mask, lowered by a cgroup CPU quota (v2 ``cpu.max``, v1
``cpu.cfs_quota_us / cpu.cfs_period_us``) rounded down, and never below one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class Cores:
    count: int
    #: Why this many, for the start banner: "2 cores available", "4 cores, quota 1.5 CPUs".
    reason: str


def cgroup_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup"),
                 ) -> float | None:
    """CPUs the cgroup quota allows (a fraction is possible), or None without a quota."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        rel = path.lstrip("/")
        if hierarchy == "0" and controllers == "":
            # v2: the quota may be set on this cgroup or on any ancestor; the lowest counts.
            quotas = []
            here = root / rel
            while True:
                q = _v2_quota(here / "cpu.max")
                if q is not None:
                    quotas.append(q)
                if here == root or root not in here.parents:
                    break
                here = here.parent
            if quotas:
                return min(quotas)
        elif "cpu" in controllers.split(","):
            for base in (root / "cpu,cpuacct", root / "cpu"):
                for d in (base / rel, base):
                    q = _v1_quota(d)
                    if q is not None:
                        return q
    return None


def _v2_quota(path: Path) -> float | None:
    try:
        quota, _, period = path.read_text().strip().partition(" ")
    except OSError:
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return int(quota) / int(period)


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text().strip())
        period = int((directory / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def available_cores(root: Path = CGROUP_ROOT,
                    proc_cgroup: Path = Path("/proc/self/cgroup")) -> Cores:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    quota = cgroup_quota(root, proc_cgroup)
    if quota is None or math.floor(quota) >= affinity:
        return Cores(max(1, affinity), f"{affinity} core{'s' * (affinity != 1)} available")
    count = max(1, math.floor(quota))
    return Cores(count, f"{affinity} cores, cgroup quota {quota:g} CPUs")

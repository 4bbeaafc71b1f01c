"""The demo data set generator."""

from headwater.demo.dataset import DemoCounts, ProgressFn, build_demo, counts_for_scale

__all__ = ["DemoCounts", "ProgressFn", "build_demo", "counts_for_scale"]

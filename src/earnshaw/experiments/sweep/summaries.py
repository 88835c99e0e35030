"""Summaries of a sweep's rows: per-cell success rates with Wilson intervals and verdict fractions."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from earnshaw.landscape.analyze import VERDICTS

__all__ = ["wilson_interval", "summarise", "TIME_COLUMNS"]

#: Columns that hold wall-clock timings (they differ between otherwise identical runs).
TIME_COLUMNS = ("time_cell_s", "time_solve_s", "time_analyze_s")


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple:
    """Wilson score interval for a binomial proportion (95% by default); ``(nan, nan)`` for ``n = 0``.

    Example::

        wilson_interval(10, 10)   # (0.722..., 1.0)
    """
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(rows: list, axes: Optional[list] = None) -> list:
    """One dict per cell: its grid values, seeds, success rate with a Wilson 95% interval,
    fractions per verdict, median final loss and the cell's time.

    ``success`` means every teacher unit was recovered (``recovered == teacher.k``).

    Example::

        summarise(run.rows(), cfg.axes())[0]["success_rate"]
    """
    by_cell = {}
    for r in rows:
        by_cell.setdefault(r["cell"], []).append(r)
    out = []
    for cell, rs in sorted(by_cell.items(), key=lambda kv: kv[1][0].get("cell_index", 0)):
        n = len(rs)
        wins = sum(bool(r["success"]) for r in rs)
        lo, hi = wilson_interval(wins, n)
        params = {k[len("param."):]: v for k, v in rs[0].items() if k.startswith("param.")}
        if axes:
            params = {a: params.get(a, rs[0].get(a)) for a in axes}
        entry = dict(cell=cell, cell_index=rs[0].get("cell_index", 0), **params, seeds=n, successes=wins,
                     success_rate=wins / n, ci_low=lo, ci_high=hi)
        for v in VERDICTS:
            entry[v] = sum(r["verdict"] == v for r in rs) / n
        entry["median_loss"] = float(np.median([r["loss"] for r in rs]))
        entry["time_cell_s"] = float(rs[0].get("time_cell_s", math.nan))
        out.append(entry)
    return out

r"""Numerical checks of the paper's theorems, each over many seeds (``earnshaw verify``).

One module per check (``theorem5``, ``theorem9`` (Earnshaw), ``theorem11``, ``theorem12``,
``theorem17``, ``lemma29``, ``lemma31``, ``theorem30``); every ``check_*`` function runs one claim
of the paper (as corrected in docs/math.md) over many random problems in batched solver calls, and returns a *row*::

    {"check", "activation", "potential", "claim", "run", "seeds", "success", "worst",
     "verdict", "details"}

``success`` is the fraction of seeds (problems) on which the claim held, ``worst`` the
worst measured case (a number with its meaning), and ``verdict`` is ``"PASS"`` when the
claim held on every seed (or on the required fraction, for "with high probability"
claims). ``details`` holds the raw per-seed numbers. Each check takes ``seeds`` and
``quick`` and keyword arguments that can make it test a *wrong* claim (the paper's
uncorrected factor in Theorem 5, a non-harmonic potential for Earnshaw, ``l = 2`` for
Theorem 30, ...), so the tests can show every check is able to fail.

Conventions: natural sign (the student predicts ``+sum a_i sigma(x, theta_i)``, so
``a = b`` at the optimum; the paper's ``a = -b``). Everything runs in float64; the
caller enables it (the CLI does, and :func:`verify` checks).
"""
from __future__ import annotations

import json
from typing import Callable, List, Optional

import jax
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from earnshaw import runtime
from earnshaw.experiments.verify.common import ROW_KEYS, _require_x64, _unresolved_a # noqa: F401 re-exported
from earnshaw.experiments.verify.lemma29 import check_lemma29
from earnshaw.experiments.verify.lemma31 import check_lemma31
from earnshaw.experiments.verify.theorem11 import check_theorem11
from earnshaw.experiments.verify.theorem12 import check_theorem12
from earnshaw.experiments.verify.theorem17 import check_theorem17
from earnshaw.experiments.verify.theorem30 import check_theorem30
from earnshaw.experiments.verify.theorem5 import check_theorem5
from earnshaw.experiments.verify.theorem9 import check_earnshaw
from earnshaw.store import RunFolder

__all__ = ["check_theorem5", "check_earnshaw", "check_theorem11", "check_theorem12", "check_theorem17",
           "check_lemma29", "check_lemma31", "check_theorem30", "CHECKS", "verify", "table_rows", "VerifyConfig",
           "run_check", "run_verify", "ROW_KEYS", "COMMAND"]

COMMAND = "verify"


# --------------------------------------------------------------------------------------------------------------
# all checks
# --------------------------------------------------------------------------------------------------------------

#: ``name -> (function, seeds in quick mode, seeds in full mode)``; ``seeds=`` of :func:`verify` overrides both.
CHECKS = {
    "theorem5": (check_theorem5, 50, 500),
    "earnshaw": (check_earnshaw, 50, 500),
    "theorem11": (check_theorem11, 32, 200),
    "theorem12": (check_theorem12, 16, 64),
    "theorem17": (check_theorem17, 4, 32),
    "lemma29": (check_lemma29, 100, 500),
    "lemma31": (check_lemma31, 50, 200),
    "theorem30": (check_theorem30, 200, 1000),
}


def verify(quick: bool = False, seeds: Optional[int] = None, *, only=None,
           progress: Optional[Callable[[str, int, int], None]] = None) -> list:
    """Run every check (or those named in ``only``) and return their rows, in order.

    Args:
      quick: fewer seeds and steps (about a minute or two on two CPU cores, JIT included).
      seeds: seeds per check, overriding the per-check defaults of :data:`CHECKS`.
      only: iterable of names from :data:`CHECKS`.
      progress: called as ``progress(name, done, total)`` before each check and at the end.
    """
    _require_x64()
    names = list(CHECKS) if only is None else list(only)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; valid: {', '.join(CHECKS)}")
    rows = []
    for i, name in enumerate(names):
        if progress is not None:
            progress(name, i, len(names))
        fn, nq, nf = CHECKS[name]
        n = seeds if seeds is not None else (nq if quick else nf)
        row = fn(seeds=n, quick=quick)
        row["name"] = name
        rows.append(row)
    if progress is not None:
        progress("done", len(names), len(names))
    return rows


def table_rows(rows) -> list:
    """Rows without ``details``, flat and JSON/Parquet friendly (details as a JSON string)."""
    out = []
    for r in rows:
        flat = {k: r[k] for k in ("name",) + ROW_KEYS if k in r}
        flat["seconds"] = float(r.get("details", {}).get("seconds", float("nan")))
        flat["details"] = json.dumps(r.get("details", {}), default=_jsonable)
        out.append(flat)
    return out


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)

class VerifyConfig(BaseModel):
    """What ``earnshaw verify`` runs: ``quick`` settings, ``seeds`` per check (None: each check's default),
    ``only`` a subset of :data:`CHECKS` (None: all). Unknown keys are refused.

    Example::

        VerifyConfig(quick=True, only=["lemma31"])
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    quick: StrictBool = False
    seeds: Optional[StrictInt] = Field(None, ge=1)
    only: Optional[List[str]] = None

    @field_validator("only")
    @classmethod
    def _only(cls, v):
        if v is not None:
            unknown = [n for n in v if n not in CHECKS]
            if unknown or not v:
                raise ValueError(f"unknown checks {unknown}; valid: {', '.join(CHECKS)}")
        return v

    @property
    def names(self) -> list:
        return list(CHECKS) if self.only is None else list(self.only)


def run_check(name: str, quick: bool, seeds: Optional[int], progress=None) -> dict:
    """A runtime task: check ``name`` of :data:`CHECKS` in any process; its row (with ``details``).

    An entry point of worker processes, so it turns float64 on here."""
    jax.config.update("jax_enable_x64", True)
    fn, nq, nf = CHECKS[name]
    n = seeds if seeds is not None else (nq if quick else nf)
    row = fn(seeds=n, quick=quick)
    row["name"] = name
    return row


def run_verify(cfg: VerifyConfig, out_dir=None, *, run: Optional[RunFolder] = None, backend: str = "local",
               address: Optional[str] = None, workers: int = 1,
               progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Run (or resume) ``earnshaw verify`` in a run folder: one cell per check, its flat row committed.

    Returns ``{"run_dir", "rows": [flat rows in check order], "computed", "skipped", "seconds"}``.

    Example::

        out = run_verify(VerifyConfig(quick=True, only=["lemma31"]), "runs")
        out["rows"][0]["verdict"]   # 'PASS'
    """
    _require_x64()
    runtime.check_backend(backend, address, workers)
    if run is None:
        run = RunFolder.create(out_dir if out_dir is not None else "runs", "verify", command=COMMAND, config=cfg)
    names = cfg.names
    tasks = [runtime.Task(id=name, fn=run_check, args=(name, cfg.quick, cfg.seeds), label=name, index=i)
             for i, name in enumerate(names)]

    def commit(task, row):
        flat = dict(table_rows([row])[0], cell=task.id, cell_index=task.index)
        run.commit(task.id, [flat], seconds=flat["seconds"])

    out = runtime.run_cells(run, tasks, commit, backend=backend, address=address, workers=workers,
                            progress=progress)
    run.write_results()
    rows = run.rows()
    run.update_meta(total_s=sum(s.get("seconds") or 0.0 for s in run.meta["sessions"]))
    return dict(out, run_dir=str(run.path), rows=rows)

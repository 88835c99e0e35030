r"""``earnshaw census``: the distinct critical points many GD runs reach, per (activation, k, n) cell.

Each cell takes the teacher ``w_j = e_j`` in ``d = k`` with output weights 1, ``seeds`` students of ``n``
units drawn ``theta_i ~ N(0, init_scale^2 / d I)`` (output weights 1, fixed under ``train = "theta"``),
runs GD to the per-unit gradient threshold or the step limit (:func:`~earnshaw.experiments.census.descend.descend`),
polishes and groups the end points into families modulo the symmetries (:func:`earnshaw.census`: permuted
units, sign flips for odd activations, permuted input coordinates), and certifies each family's critical
point in ball arithmetic (:func:`earnshaw.certify`) where the potential allows and the point has at most
``certify_max_coords`` trainable coordinates.

Objective convention: step size, gradient threshold and the spurious threshold are on Safran and Shamir's
``F = L / 2`` (``L = E[(f - f_hat)^2]``, earnshaw's objective), so the preset is their protocol verbatim;
tables report ``F``.

Each cell is a cell of a :class:`~earnshaw.store.RunFolder` (rows: one per family, plus one summary row; arrays:
loss curves and end points), so a census resumes where it stopped, on any backend of :mod:`earnshaw.runtime`.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from earnshaw import runtime
from earnshaw._typing import Student, Teacher
from earnshaw.experiments.census.descend import descend
from earnshaw.experiments.sweep.summaries import wilson_interval
from earnshaw.store import RunFolder

__all__ = ["CensusConfig", "PRESETS", "preset", "run_census", "census_cell", "cell_problem", "COMMAND", "Cell"]

COMMAND = "census"

#: Activations on the unit sphere (their potential is defined for unit vectors).
SPHERE = ("sign",)


class CensusConfig(BaseModel):
    """What ``earnshaw census`` runs. Unknown keys are refused.

    Attributes:
      name: run name. activations: potentials by name (``almost_harmonic`` takes ``d = k`` and ``eps``).
      k: teacher sizes (``d = k``, ``w_j = e_j``, output weights 1). extra_units: the student has ``n = k + e``
        units for each ``e``. seeds: starts per cell. seed: master PRNG seed.
      train: ``"theta"`` (output weights fixed at 1, Safran and Shamir) or ``"both"``.
      lr: GD step size on ``F = L / 2``. gtol: threshold on the largest per-unit gradient norm of ``F``.
      max_steps: step limit per seed. spurious: a run is spurious when ``F >= spurious`` at its end.
      init_scale: ``theta_i ~ N(0, init_scale^2 / d I)``. round_steps, chunk: see
        :func:`~earnshaw.experiments.census.descend.descend`.
      certify: certify each family (when the potential is certifiable). certify_max_coords: skip points with
        more trainable coordinates (ball arithmetic costs ``n^3``). eps: almost_harmonic's ``eps``.
      potential_options: per activation, how its potential is computed (``method``, ``order``, ``tol``,
        ``terms``, ``radius`` of :func:`earnshaw.potential`), e.g. ``{"tanh": {"method": "fast"}}``.

    Example::

        CensusConfig(activations=["relu"], k=[4, 5], seeds=50)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "census"
    activations: List[str] = ["relu"]
    k: List[StrictInt] = [6]
    extra_units: List[StrictInt] = [0]
    seeds: StrictInt = Field(1000, ge=1)
    seed: StrictInt = Field(0, ge=0)
    train: str = "theta"
    lr: float = Field(0.1, gt=0)
    gtol: float = Field(1.6e-10, gt=0)
    max_steps: StrictInt = Field(100_000, ge=1)
    spurious: float = Field(1e-3, gt=0)
    init_scale: float = Field(1.0, gt=0)
    round_steps: StrictInt = Field(1000, ge=1)
    chunk: StrictInt = Field(128, ge=1)
    certify: StrictBool = True
    certify_max_coords: StrictInt = Field(500, ge=0)
    eps: float = Field(0.5, gt=0)
    potential_options: Dict[str, Dict[str, float | int | str]] = Field(default_factory=dict)

    @field_validator("activations")
    @classmethod
    def _activations(cls, v):
        from earnshaw.potentials import POTENTIALS

        bad = [a for a in v if a not in POTENTIALS]
        if bad or not v:
            raise ValueError(f"unknown activations {bad}; valid: {', '.join(sorted(POTENTIALS))}")
        return v

    @field_validator("k")
    @classmethod
    def _k(cls, v):
        if not v or min(v) < 1:
            raise ValueError("k must be a non-empty list of positive integers")
        return v

    @field_validator("extra_units")
    @classmethod
    def _extra(cls, v):
        if not v or min(v) < 0:
            raise ValueError("extra_units must be a non-empty list of integers >= 0")
        return v

    @field_validator("train")
    @classmethod
    def _train(cls, v):
        if v not in ("theta", "both"):
            raise ValueError(f"unknown train {v!r}; valid: theta, both")
        return v

    @field_validator("potential_options")
    @classmethod
    def _options(cls, v, info):
        from earnshaw.potentials import METHOD_OPTIONS

        acts = info.data.get("activations") or []
        for act, opts in v.items():
            if act not in acts:
                raise ValueError(f"potential_options for {act!r}, which is not among the activations {acts}")
            bad = sorted(set(opts) - set(METHOD_OPTIONS))
            if bad:
                raise ValueError(f"unknown potential options {bad} for {act!r}; valid: {', '.join(METHOD_OPTIONS)}")
        return v

    def cells(self) -> list:
        """``(activation, k, n)`` for every cell, in order."""
        return [Cell(act, k, k + e) for act in self.activations for k in self.k for e in self.extra_units]


class Cell(tuple):
    """``(activation, k, n)`` with an id for the run folder."""

    def __new__(cls, activation, k, n):
        return super().__new__(cls, (activation, int(k), int(n)))

    @property
    def id(self) -> str:
        return f"{self[0]}-k{self[1]}-n{self[2]}"


#: Named configs; ``earnshaw census PRESET --k 6..8 --seeds 200`` shrinks them.
PRESETS: Dict[str, dict] = {
    # Safran & Shamir (2018): ReLU teacher w_j = e_j in d = k, output weights 1, student of n = k or k + 1 units
    # initialised N(0, 1/d), GD step 0.1 on F until max_i |grad_{w_i} F| < 1.6e-10, spurious when F >= 1e-3.
    "safran-shamir": dict(name="safran-shamir", activations=["relu"], k=list(range(6, 21)), extra_units=[0, 1],
                          seeds=1000, train="theta", lr=0.1, gtol=1.6e-10, max_steps=100_000, spurious=1e-3),
    # the paper's activations, same teacher, output weights trained too
    "paper-activations": dict(name="paper-activations", activations=["erf", "tanh", "sigmoid_pm1", "sign",
                                                                     "almost_harmonic"],
                              k=[3, 4, 5, 6], extra_units=[0], seeds=200, train="both", lr=0.1, gtol=1e-8,
                              max_steps=20_000, spurious=1e-3),
}


def preset(name: str, **overrides) -> CensusConfig:
    """The preset ``name`` of :data:`PRESETS` with fields replaced (``None`` values ignored).

    >>> cfg = preset("safran-shamir", k=[6, 7], seeds=10)
    >>> cfg.k, cfg.seeds, cfg.lr, cfg.gtol, [c.id for c in cfg.cells()][:2]
    ([6, 7], 10, 0.1, 1.6e-10, ['relu-k6-n6', 'relu-k6-n7'])
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    data = dict(PRESETS[name])
    data.update({key: v for key, v in overrides.items() if v is not None})
    if "potential_options" not in overrides:  # a preset's options follow its activations when they are narrowed
        data["potential_options"] = {a: o for a, o in data.get("potential_options", {}).items()
                                     if a in data["activations"]}
    return CensusConfig.model_validate(data)


def cell_problem(cfg: CensusConfig, cell: Cell):
    """``(problem, starts)`` of one cell: the identity teacher and ``cfg.seeds`` students of ``n`` units."""
    import earnshaw as es

    act, k, n = cell
    opts = cfg.potential_options.get(act, {})
    pot = es.potential(act, d=k, eps=cfg.eps) if act == "almost_harmonic" else es.potential(act, **opts)
    teacher = Teacher(b=jnp.ones(k), w=jnp.eye(k))
    manifold = "sphere" if act in SPHERE else "euclidean"
    problem = es.Problem(pot, teacher, train=cfg.train, manifold=manifold)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.seed), k), n)
    theta = cfg.init_scale / math.sqrt(k) * jax.random.normal(key, (cfg.seeds, n, k))
    if manifold == "sphere":
        theta = theta / jnp.linalg.norm(theta, axis=-1, keepdims=True)
    return problem, Student(a=jnp.ones((cfg.seeds, n)), theta=theta)


def _symmetries(problem):
    """The identity teacher with equal output weights: permuting input coordinates permutes its units."""
    from earnshaw.landscape.census import coordinate_permutations

    return coordinate_permutations(problem.d)


def census_cell(cfg_json: str, act: str, k: int, n: int, progress=None) -> dict:
    """A runtime task: one cell, GD -> polish -> group -> certify, in any process.

    Returns ``{"rows", "arrays", "timings"}``: one row per family and one ``row_kind="cell"`` summary row."""
    jax.config.update("jax_enable_x64", True)  # an entry point of worker processes; critical points need float64
    import earnshaw as es

    cfg = CensusConfig.model_validate_json(cfg_json)
    cell = Cell(act, k, n)
    problem, starts = cell_problem(cfg, cell)
    # Safran and Shamir's F = L / 2: a step lr on F is lr / 2 on L, a gradient g of F is 2 g of L
    t0 = time.perf_counter()
    run = descend(problem, starts, lr=cfg.lr / 2, gtol=2 * cfg.gtol, max_steps=cfg.max_steps,
                  round_steps=cfg.round_steps, chunk=cfg.chunk)
    gd_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    euclid = problem.manifold == "euclidean"
    cen = es.census(problem, run.final, symmetries=_symmetries(problem), refine=euclid, analyze_all=False,
                    gtol=1e-8, tol=1e-5)
    group_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    certs = [_certify(cfg, problem, fam) for fam in cen.families]
    certify_s = time.perf_counter() - t0
    F = run.loss / 2
    spurious = F >= cfg.spurious
    lo, hi = wilson_interval(int(spurious.sum()), cfg.seeds)
    base = dict(activation=act, k=k, n=n, cell=cell.id)
    rows = [dict(base, row_kind="cell", family=-1, seeds=cfg.seeds, spurious_rate=float(spurious.mean()),
                 spurious_lo=lo, spurious_hi=hi, converged=float(np.mean(run.status == 1)),
                 median_steps=float(np.median(run.steps)), max_steps_taken=int(run.steps.max()),
                 families=len(cen.families), gd_s=gd_s, group_s=group_s, certify_s=certify_s,
                 seed_steps=int(run.seed_steps))]
    for i, (fam, cert) in enumerate(zip(cen.families, certs)):
        members = np.asarray(fam.seeds)
        rows.append(dict(base, row_kind="family", family=i, kind=fam.kind, F=fam.loss / 2, grad_norm=fam.grad_norm,
                         index=fam.index, lambda_min=fam.lambda_min, recovered=fam.recovered, count=len(members),
                         fraction=fam.fraction, ci_low=fam.interval[0], ci_high=fam.interval[1],
                         spurious=bool(fam.loss / 2 >= cfg.spurious),
                         gd_F_median=float(np.median(F[members])), **cert))
    arrays = dict(curve_steps=run.curve_steps, curve_F=run.curve_loss / 2, final_F=F, steps=run.steps,
                  status=run.status, family_of=np.asarray(cen.family_of),
                  final_theta=np.asarray(run.final.theta), final_a=np.asarray(run.final.a))
    keys = list(dict.fromkeys(key for r in rows for key in r))  # one schema for the cell's Parquet file
    rows = [{key: r.get(key) for key in keys} for r in rows]
    return dict(rows=rows, arrays=arrays, timings=dict(gd_s=gd_s, group_s=group_s, certify_s=certify_s))


def _certify(cfg, problem, fam) -> dict:
    """The certificate columns of one family (``certificate`` says why there is none)."""
    from earnshaw.landscape.certify import CERTIFIABLE, certify

    out = dict(certificate="", cert_kind="", cert_index=-1, cert_radius=math.nan, cert_F_lo=math.nan,
               cert_F_hi=math.nan, cert_lambda_lower=math.nan)
    base = problem.pot.name if not problem.pot.name.startswith("hermite") else "hermite"
    coords = problem.n_free(fam.point.k)
    if not cfg.certify:
        out["certificate"] = "skipped (certify = false)"
    elif problem.pot.kind != "inner" or base not in CERTIFIABLE or problem.manifold != "euclidean":
        out["certificate"] = f"n/a ({problem.pot.name}{' on the sphere' if problem.manifold != 'euclidean' else ''})"
    elif base == "relu" and _parallel(problem, fam.point):
        out["certificate"] = "n/a (relu is not twice differentiable where two units are parallel)"
    elif coords > cfg.certify_max_coords:
        out["certificate"] = f"skipped ({coords} coordinates > certify_max_coords = {cfg.certify_max_coords})"
    else:
        c = certify(problem, fam.point)
        if c.certified:
            out.update(certificate="certified", cert_kind=c.kind, cert_index=int(c.index), cert_radius=c.radius,
                       cert_F_lo=c.loss_interval[0] / 2, cert_F_hi=c.loss_interval[1] / 2,
                       cert_lambda_lower=math.nan if c.lambda_min_lower is None else c.lambda_min_lower)
        else:
            out["certificate"] = f"not certified: {c.reason}"
    return out


def _parallel(problem, point, tol=1e-9) -> bool:
    """Whether two student units, or a student and a teacher unit, are parallel (cosine within ``tol`` of 1)."""
    U = np.concatenate([np.asarray(point.theta), np.asarray(problem.teacher.w)])
    U = U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-300)
    cos = U[:point.k] @ U.T
    cos[np.arange(point.k), np.arange(point.k)] = 0.0
    return bool(np.max(cos) > 1.0 - tol)


def run_census(cfg: CensusConfig, out_dir=None, *, run: Optional[RunFolder] = None, backend: str = "local",
               address: Optional[str] = None, workers: int = 1,
               progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Run (or resume) a census in a run folder: one cell per ``(activation, k, n)``, then tables and figures.

    Returns ``{"run_dir", "rows", "computed", "skipped", "seconds"}``.

    Example::

        jax.config.update("jax_enable_x64", True)
        out = run_census(preset("safran-shamir", k=[6], seeds=100), "runs")
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError("a census polishes and certifies critical points and needs float64: "
                           "call jax.config.update('jax_enable_x64', True) first")
    runtime.check_backend(backend, address, workers)
    if run is None:
        run = RunFolder.create(out_dir if out_dir is not None else "runs", cfg.name, command=COMMAND, config=cfg)
    cfg_json = cfg.model_dump_json()
    tasks = [runtime.Task(id=c.id, fn=census_cell, args=(cfg_json, *c), index=i, label=c.id)
             for i, c in enumerate(cfg.cells())]

    def commit(task, result):
        rows = [dict(r, cell_index=task.index, seed=j) for j, r in enumerate(result["rows"])]
        run.commit(task.id, rows, arrays=result["arrays"], seconds=sum(result["timings"].values()))

    out = runtime.run_cells(run, tasks, commit, backend=backend, address=address, workers=workers,
                            progress=progress)
    run.write_results()
    rows = run.rows()
    from earnshaw.experiments.census.report import write_report

    write_report(run, cfg, rows)
    run.update_meta(total_s=sum(s.get("seconds") or 0.0 for s in run.meta["sessions"]))
    return dict(out, run_dir=str(run.path), rows=rows)

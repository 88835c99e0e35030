"""The main job: many student seeds against one random teacher, flow -> Newton -> classify.

``run_demo`` is what ``earnshaw demo`` (and ``make demo``) runs: an erf teacher
(``d=10, k=5`` by default), a thousand students from independent seeds, the
population gradient flow (diffrax, batched in chunks), Newton polishing, and the
landscape verdict for each seed. Each chunk of seeds is one cell of a
:class:`~earnshaw.store.RunFolder` (rows in ``cells/chunk-<i>.parquet``, loss curves and one
seed's path in ``cells/chunk-<i>.npz``), so an interrupted demo resumes where it stopped and the
chunks can run on any backend of :mod:`earnshaw.runtime`. At the end it writes
``results.parquet``, the summary in ``meta.json`` and the figures, and returns the summary.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from earnshaw import runtime
from earnshaw._typing import Student
from earnshaw.dynamics.flow import SOLVERS, gradient_flow
from earnshaw.landscape.analyze import VERDICTS, analyze
from earnshaw.landscape.critical import refine
from earnshaw.network import random_student, random_teacher
from earnshaw.potentials import potential as _potential
from earnshaw.store import RunFolder
from earnshaw.trajectory import STATUS

__all__ = ["DemoConfig", "run_demo", "summarise", "demo_chunk", "COMMAND"]

COMMAND = "demo"


class DemoConfig(BaseModel):
    """Settings of the main job (all have defaults; the CLI exposes the main ones). Unknown keys are refused.

    Example::

        DemoConfig(d=3, k=2, seeds=12, t1=1e4)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    activation: str = "erf"
    d: StrictInt = Field(10, ge=1)
    k: StrictInt = Field(5, ge=1)
    seeds: StrictInt = Field(1000, ge=1)
    seed: StrictInt = Field(0, ge=0)
    t1: float = Field(1e6, gt=0)
    gtol: float = Field(1e-8, gt=0)
    # The erf landscape has plateaus with Hessian eigenvalues ~1e-6 next to ones ~10: the flow is
    # stiff, so an implicit solver reaches t = 1e6 in a few hundred steps where Tsit5 needs ~10^6.
    # Kvaerno3 took half the steps and time of Kvaerno5 here, with the same verdicts (100 seeds);
    # rtol 1e-3 took 0.58x the time of 1e-4 with the same verdict fractions (250 seeds): Newton
    # polishes the end points, so the path only has to stay in its basin.
    solver: str = "kvaerno3"
    rtol: float = Field(1e-3, gt=0)
    atol: float = Field(1e-5, gt=0)
    max_steps: StrictInt = Field(5_000, ge=1)
    chunk: StrictInt = Field(250, ge=1)
    init_scale: Optional[float] = Field(None, gt=0)  # default 1/sqrt(d): unit-norm units

    @field_validator("solver")
    @classmethod
    def _solver(cls, v):
        if v not in SOLVERS:
            raise ValueError(f"unknown solver {v!r}; valid: {', '.join(SOLVERS)}")
        return v

    @field_validator("activation")
    @classmethod
    def _activation(cls, v):
        _potential(v)  # a ValueError listing the valid names
        return v

    @property
    def n_chunks(self) -> int:
        return math.ceil(self.seeds / self.chunk)


def _problem(cfg: DemoConfig):
    pot = _potential(cfg.activation)
    scale = cfg.init_scale if cfg.init_scale is not None else 1.0 / math.sqrt(cfg.d)
    kt, ks = jax.random.split(jax.random.key(cfg.seed))
    teacher = random_teacher(kt, cfg.d, cfg.k, scale=scale)
    # one key per student seed: seed i is reproducible on its own
    keys = jax.random.split(ks, cfg.seeds)
    return pot, teacher, keys, scale


def demo_chunk(cfg_json: str, c: int, progress=None) -> dict:
    """A runtime task: chunk ``c`` of the demo's seeds, flow -> Newton -> verdicts, in any process.

    Returns ``{"rows", "arrays", "timings"}``; the last chunk is padded to ``chunk`` seeds (so it reuses
    the compiled programs) and cut back before it returns."""
    jax.config.update("jax_enable_x64", True)  # an entry point of worker processes; the analysis needs float64
    cfg = DemoConfig.model_validate_json(cfg_json)
    pot, teacher, keys, scale = _problem(cfg)
    lo, hi = c * cfg.chunk, min((c + 1) * cfg.chunk, cfg.seeds)
    part = jax.vmap(lambda k_: random_student(k_, cfg.d, cfg.k, scale=scale))(keys[lo:hi])
    if hi - lo < cfg.chunk:
        pad = cfg.chunk - (hi - lo)
        part = jax.tree_util.tree_map(lambda x: jnp.concatenate([x, jnp.repeat(x[:1], pad, 0)]), part)
    t0 = time.perf_counter()
    traj = gradient_flow(pot, teacher, part, t1=cfg.t1, gtol=cfg.gtol, rtol=cfg.rtol, atol=cfg.atol,
                         solver=cfg.solver, max_steps=cfg.max_steps, on_divergence="warn")
    traj = jax.tree_util.tree_map(np.asarray, traj)
    flow_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    final = Student(a=jnp.asarray(traj.final.a), theta=jnp.asarray(traj.final.theta))
    polished, gn = refine(pot, teacher, final)
    # follow: a plateau seed is taken on to the saddle it sits near, a run with no critical point near is told
    # apart as "escaping" (a merging pair of units with opposite, growing output weights)
    report = analyze(pot, teacher, polished, gtol=1e-9, follow=True)
    refine_s = time.perf_counter() - t0
    n = hi - lo
    status = np.vectorize(STATUS.get)(traj.status)
    gn = np.asarray(gn)
    rows = []
    for i, r in enumerate(report.rows()[:n]):
        rows.append(dict(seed_index=lo + i, flow_status=str(status[i]), flow_loss=float(traj.final_loss[i]),
                         flow_grad_norm=float(traj.final_grad_norm[i]), flow_steps=int(traj.n_steps[i]),
                         n_grad_evals=int(traj.n_grad_evals[i]), newton_grad_norm=float(gn[i]), **r))
    good = np.flatnonzero(np.asarray(report.verdict)[:n] == VERDICTS[0])
    show = int(good[0]) if good.size else 0
    arrays = dict(ts=traj.ts[:n], losses=traj.losses[:n], path_theta=traj.params.theta[show],
                  path_seed=np.asarray(lo + show), path_good=np.asarray(bool(good.size)),
                  teacher_w=np.asarray(teacher.w))
    return dict(rows=rows, arrays=arrays, timings=dict(flow_s=flow_s, refine_analyze_s=refine_s))


def run_demo(cfg: DemoConfig, out_dir=None, *, run: Optional[RunFolder] = None, backend: str = "local",
             address: Optional[str] = None, workers: int = 1,
             progress: Optional[Callable[[dict], None]] = None) -> dict:
    """Run (or resume) the main job in a run folder and write its rows, summary and figures.

    Args:
      cfg: :class:`DemoConfig`.
      out_dir: parent folder of a new run folder (``<out_dir>/demo-<time>/``); or
      run: a :class:`RunFolder` of the demo to continue (its config must be ``cfg``).
      backend, address, workers: where the chunks run (:mod:`earnshaw.runtime`).
      progress: receives the runtime's events (one ``"cell"`` event per chunk).

    Returns:
      Summary dict: fractions per verdict, quantiles of loss and distance, timings, and ``run_dir``.

    Example::

        jax.config.update("jax_enable_x64", True)
        summary = run_demo(DemoConfig(d=3, k=2, seeds=12, t1=1e4), "runs")
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError("the demo analyses critical points and needs float64: "
                           "call jax.config.update('jax_enable_x64', True) first")
    runtime.check_backend(backend, address, workers)
    if run is None:
        run = RunFolder.create(out_dir if out_dir is not None else "runs", "demo", command=COMMAND, config=cfg)
        run.update_meta(config=cfg.model_dump(mode="json"))
    cfg_json = cfg.model_dump_json()
    tasks = [runtime.Task(id=f"chunk-{c}", fn=demo_chunk, args=(cfg_json, c), index=c,
                          label=f"seeds {c * cfg.chunk}-{min((c + 1) * cfg.chunk, cfg.seeds) - 1}")
             for c in range(cfg.n_chunks)]
    timings = {"flow_s": 0.0, "refine_analyze_s": 0.0}

    def commit(task, result):
        for key in timings:
            timings[key] += result["timings"][key]
        rows = [dict(r, cell=task.id, cell_index=task.index, seed=r["seed_index"]) for r in result["rows"]]
        run.commit(task.id, rows, arrays=result["arrays"], seconds=sum(result["timings"].values()))

    runtime.run_cells(run, tasks, commit, backend=backend, address=address, workers=workers, progress=progress)
    run.write_results()
    rows = run.rows()
    _figures(run, cfg, tasks, rows)
    summary = summarise(rows, cfg.k)
    summary.update(timings=timings, seeds=cfg.seeds, run_dir=str(run.path))
    return summary


def _figures(run: RunFolder, cfg: DemoConfig, tasks, rows):
    # matplotlib is heavy and only needed here: imported when figures are written
    import matplotlib.pyplot as plt

    from earnshaw import plot

    arrays = [run.cell_arrays(t.id) for t in tasks]
    verdicts = [r["verdict"] for r in rows]
    ts = np.concatenate([a["ts"] for a in arrays])
    losses = np.concatenate([a["losses"] for a in arrays])
    # the paths of the first seed that reached the global minimum (else seed 0)
    shown = next((a for a in arrays if bool(a["path_good"])), arrays[0])
    mirror = _potential(cfg.activation).activation is not None and _potential(cfg.activation).activation.odd
    figs = {
        "loss_curves.png": plot.loss_curves(ts, losses, labels=verdicts,
                                            title=f"{cfg.activation}, d={cfg.d}, k={cfg.k}: loss along the flow"),
        "distances.png": plot.distance_histogram(np.array([r["max_distance"] for r in rows])),
        "trajectories.png": plot.trajectories_2d(
            shown["path_theta"], shown["teacher_w"], mirror=mirror,
            title=f"seed {int(shown['path_seed'])}: electrons (paths; x start, o end) and protons"),
    }
    out = run.figures_dir()
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=110)
    plt.close("all")


def summarise(rows: list, k: int) -> dict:
    """Fractions per verdict (and of seeds that recovered all ``k`` teacher units), quantiles of loss and
    distance, from the demo's rows.

    Example::

        summarise(run.rows(), k=5)["fractions"]["global minimum"]
    """
    verdict = np.array([r["verdict"] for r in rows])
    fractions = {name: float(np.mean(verdict == name)) for name in VERDICTS}
    counts = {name: int(np.sum(verdict == name)) for name in VERDICTS}
    # "not converged" split by why: the flow's budget ran out, or it stopped and Newton found no critical point
    stuck = verdict == VERDICTS[3]
    flow = np.array([r.get("flow_status", "") for r in rows])
    counts["not converged (budget ran out)"] = int(np.sum(stuck & (flow == "limit_reached")))
    saddles = [r.get("index", 0) for r in rows if r["verdict"] == VERDICTS[2]]
    index_counts = {str(i): int(np.sum(np.array(saddles) == i)) for i in sorted(set(saddles))}
    fractions["recovered all units"] = float(np.mean(np.array([r["recovered"] for r in rows]) == k))
    q = [0.0, 0.5, 0.9, 1.0]
    loss = np.array([r["loss"] for r in rows])
    maxd = np.array([r["max_distance"] for r in rows])
    return dict(fractions=fractions, counts=counts, saddle_index_counts=index_counts,
                loss_quantiles=dict(zip(q, np.quantile(loss, q).tolist())),
                distance_quantiles=dict(zip(q, np.quantile(maxd, q).tolist())), verdicts=list(VERDICTS))

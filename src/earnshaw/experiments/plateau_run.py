"""``earnshaw plateau``: plateau curves, fixed points and lengths as a resumable run folder.

One cell per ``(K, M, d, lr)``: the ODE of online SGD from :func:`~earnshaw.experiments.plateau.plateau_start`,
the symmetric fixed point found with Newton from the plateau state (height, Hessian index), the escape time,
optionally a seed-batched simulation at ``d`` from exactly the ODE's start. Each cell commits its row and its
curves to a :class:`~earnshaw.store.RunFolder`, so an interrupted run resumes with the cells it lacks; at the end
the folder gets ``results.parquet``, ``plateau.md`` / ``plateau.json`` tables and ``figures/``.
"""
from __future__ import annotations

import itertools
import json
import math
import time
from typing import Callable, List, Optional, Tuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from earnshaw import runtime
from earnshaw.store import RunFolder, write_json_atomic, write_text_atomic

__all__ = ["PlateauConfig", "PRESETS", "COMMAND", "run_plateau", "plateau_cell", "cells_of", "markdown_table",
           "length_fits"]

COMMAND = "plateau"
#: Figures clip eps_g here: the ODE's absolute tolerance (1e-9 on Q, R, a) moves L / 2 by about this much, so
#: smaller values are the solver's error, not the dynamics.
FLOOR = 1e-8


class PlateauConfig(BaseModel):
    """What ``earnshaw plateau`` runs (all fields have defaults; unknown keys are refused).

    Cells: every ``(K, M)`` of ``sizes`` at every ``d`` and ``lr``. ``T = tau I``, ``b = 1``; the start is
    ``Q = q0 I``, ``R ~ N(0, q0 tau / d)``, ``a = a0``. ``sim_seeds > 0`` adds a simulation at ``d`` (an integer
    then) from exactly the ODE's start, to ``t = sim_t1``.

    >>> PlateauConfig(sizes=[(2, 2)], d=[1e3], t1=100.0).cells
    1
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "plateau"
    activation: str = "erf"
    sizes: List[Tuple[StrictInt, StrictInt]] = [(2, 2), (3, 3), (4, 4), (5, 5)]
    d: List[float] = [1e4]
    lr: List[float] = [0.1]
    lr_a: float = Field(0.0, ge=0)
    noise: float = Field(0.0, ge=0)
    decay: float = Field(0.0, ge=0)
    tau: float = Field(0.5, gt=0)
    q0: float = Field(0.5, gt=0)
    a0: float = 1.0
    t1: float = Field(1e4, gt=0)
    n_save: StrictInt = Field(400, ge=20)
    seed: StrictInt = Field(0, ge=0)
    sim_seeds: StrictInt = Field(0, ge=0)
    sim_t1: float = Field(100.0, gt=0)
    sim_saves: StrictInt = Field(60, ge=3)
    htol: float = Field(1e-6, gt=0)

    @field_validator("activation")
    @classmethod
    def _activation(cls, v):
        from earnshaw.potentials import potential

        pot = potential(v)  # a ValueError listing the valid names
        if pot.kind != "inner" or pot.activation is None:
            raise ValueError(f"{v!r} is not an activation with an inner-product potential")
        return v

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v):
        if not v or any(K < 1 or M < 1 for K, M in v):
            raise ValueError("sizes must be a non-empty list of [K, M] with K, M >= 1")
        return v

    @field_validator("d", "lr")
    @classmethod
    def _positive(cls, v):
        if not v or any(not (math.isfinite(x) and x > 0) for x in v):
            raise ValueError("must be a non-empty list of finite numbers > 0")
        return v

    @model_validator(mode="after")
    def _simulable(self):
        if self.sim_seeds and any(d != int(d) or d > 1e5 for d in self.d):
            raise ValueError("sim_seeds > 0 simulates at each d, which must then be an integer <= 1e5; "
                             f"got d = {self.d}")
        return self

    @property
    def cells(self) -> int:
        return len(self.sizes) * len(self.d) * len(self.lr)


def _preset(**kw) -> PlateauConfig:
    return PlateauConfig(**kw)


#: Named configs; ``earnshaw plateau PRESET`` runs one, ``--set key=value`` overrides its fields.
PRESETS = {
    # Saad and Solla's setting: erf(x / sqrt 2) units (tau = 1/2), K = M, second layer fixed at 1; at lr = 0.5
    # the lr^2 terms lift the plateaus of K >= 4 far above the fixed point, at lr = 0.1 they stay close
    "saad-solla": _preset(name="saad-solla", sizes=[(2, 2), (3, 3), (4, 4), (5, 5)], d=[500], lr=[0.1],
                          t1=1e4, sim_seeds=4, sim_t1=1000.0),
    # Goldt et al. (2019): over-parameterised students, second layer trained, M = 2 teacher units
    "overparam": _preset(name="overparam", sizes=[(2, 2), (3, 2), (4, 2), (6, 2)], d=[500], lr=[0.2], lr_a=0.2,
                         t1=1e4, sim_seeds=4, sim_t1=600.0),
    # the plateau's length against d (through the initial overlaps) and the learning rate, K = M = 2
    "length": _preset(name="length", sizes=[(2, 2)], d=[1e2, 1e3, 1e4, 1e5, 1e6], lr=[0.1, 0.2, 0.5, 1.0],
                      t1=1e4),
}


def cells_of(cfg: PlateauConfig) -> list:
    """``[(id, label, (K, M, d, lr))]`` in the run's order.

    >>> cells_of(PlateauConfig(sizes=[(2, 2)], d=[1e3], lr=[0.5]))[0][:2]
    ('K2-M2-d1000-lr0.5', 'K = 2, M = 2, d = 1000, lr = 0.5')
    """
    out = []
    for (K, M), d, lr in itertools.product(cfg.sizes, cfg.d, cfg.lr):
        out.append((f"K{K}-M{M}-d{d:g}-lr{lr:g}", f"K = {K}, M = {M}, d = {d:g}, lr = {lr:g}", (K, M, d, lr)))
    return out


def plateau_cell(cfg_json: str, K: int, M: int, d: float, lr: float, progress=None) -> dict:
    """A runtime task: one curve, its fixed point and length, and the optional simulation.

    Returns ``{"row", "arrays"}``."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)  # an entry point of worker processes; Newton and Hessians need it
    from earnshaw.dynamics.online import online_ode, online_sgd
    from earnshaw.dynamics.order import student_from_order
    from earnshaw.experiments.plateau import escape_time, fixed_point_of_run, plateau_start, symmetric_height

    cfg = PlateauConfig.model_validate_json(cfg_json)
    t0 = time.perf_counter()
    p, T, b = plateau_start(K, M, d, q0=cfg.q0, a0=cfg.a0, tau=cfg.tau, seed=cfg.seed)
    opts = dict(lr=lr, lr_a=cfg.lr_a, noise=cfg.noise, decay=cfg.decay)
    run = online_ode(cfg.activation, T, b, p, t1=cfg.t1, n_save=cfg.n_save, **opts)
    ts, eps = np.asarray(run.ts), np.asarray(run.eps_g)
    ode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fp = fixed_point_of_run(cfg.activation, T, b, run, train="both" if cfg.lr_a > 0 else "theta", htol=cfg.htol)
    newton_s = time.perf_counter() - t0
    t_escape = escape_time(ts, eps, 0.5 * fp.height, after=fp.t_plateau)
    t_enter = escape_time(ts, eps, 1.05 * fp.ode_height)
    reference = (symmetric_height(K, tau=cfg.tau) if cfg.activation == "erf" and K == M and cfg.lr_a == 0
                 and cfg.a0 == 1.0 else math.nan)
    row = dict(K=K, M=M, d=float(d), lr=float(lr), lr_a=cfg.lr_a, fixed_point_height=fp.height,
               symmetric_height_1d=reference, ode_plateau_height=fp.ode_height, t_plateau=fp.t_plateau,
               t_enter=t_enter, t_escape=t_escape, length=t_escape - t_enter, index=fp.index,
               lambda_min=fp.lambda_min, newton_grad_norm=fp.grad_norm, unit_spread=fp.spread,
               final_eps=float(eps[-1]), ode_s=ode_s, newton_s=newton_s)
    arrays = dict(ts=ts, eps=eps, overlaps=fp.overlaps, a=fp.a)
    if cfg.sim_seeds:
        t0 = time.perf_counter()
        teacher, student = student_from_order(p, T, b, d=int(d))
        batch = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (cfg.sim_seeds, *x.shape)), student)
        sim = online_sgd(jax.random.key(cfg.seed), cfg.activation, teacher, batch, t1=cfg.sim_t1,
                         n_save=cfg.sim_saves, **opts)
        ode = online_ode(cfg.activation, T, b, p, ts=np.asarray(sim.ts), **opts)
        e = np.asarray(sim.eps_g)
        mean, sem = e.mean(0), e.std(0, ddof=1) / math.sqrt(e.shape[0]) if e.shape[0] > 1 else np.zeros(e.shape[1])
        gap = np.abs(mean - np.asarray(ode.eps_g))
        row.update(sim_seeds=cfg.sim_seeds, sim_t1=float(sim.ts[-1]), sim_max_rel_gap=float(np.max(
            gap / np.maximum(np.asarray(ode.eps_g), 1e-12))), sim_max_gap_in_sem=float(np.max(
                gap[1:] / np.maximum(sem[1:], 1e-300))), sim_s=time.perf_counter() - t0)
        arrays.update(sim_ts=np.asarray(sim.ts), sim_mean=mean, sim_sem=sem)
    return dict(row=row, arrays=arrays)


def run_plateau(cfg: PlateauConfig, out_dir=None, *, run: Optional[RunFolder] = None, backend: str = "local",
                address: Optional[str] = None, workers: int = 1,
                progress: Optional[Callable[[dict], None]] = None, figures: bool = True) -> dict:
    """Run (or resume) ``cfg`` in a run folder: the cells it lacks, then the tables and figures.

    Args:
      cfg: :class:`PlateauConfig`.
      out_dir: parent folder of a new ``<out_dir>/<name>-<time>/``; or
      run: a :class:`RunFolder` of this command to continue.
      backend: ``local`` or ``ray`` (:mod:`earnshaw.runtime`).
      address: Ray cluster address.
      workers: local backend: cells at once, each in its own process.
      progress: receives the runtime's events.
      figures: write ``figures/``.

    Returns:
      ``{"rows", "computed", "skipped", "seconds", "run_dir"}``.

    Example::

        out = run_plateau(PRESETS["saad-solla"], "runs")
    """
    runtime.check_backend(backend, address, workers)
    if run is None:
        run = RunFolder.create(out_dir if out_dir is not None else "runs", cfg.name, command=COMMAND, config=cfg)
    cfg_json = cfg.model_dump_json()
    cells = cells_of(cfg)
    tasks = [runtime.Task(id=cid, fn=plateau_cell, args=(cfg_json, *args), index=i, label=label)
             for i, (cid, label, args) in enumerate(cells)]

    def commit(task, result):
        row = dict(result["row"], cell=task.id, cell_index=task.index)
        run.commit(task.id, [row], arrays=result["arrays"], seconds=result["row"]["ode_s"] + result["row"]["newton_s"])

    out = runtime.run_cells(run, tasks, commit, backend=backend, address=address, workers=workers,
                            progress=progress)
    run.write_results()
    rows = run.rows()
    fits = length_fits(rows)
    write_text_atomic(run.path / "plateau.md", markdown_table(rows, fits))
    write_json_atomic(run.path / "plateau.json", _finite({"rows": rows, "length_fits": fits}))
    if figures:
        _figures(run, cfg, cells)
    return dict(rows=rows, length_fits=fits, run_dir=str(run.path), **out)


def length_fits(rows: list) -> list:
    """Per learning rate (and size) with at least three ``d``: the least-squares line ``t_escape = c + s ln d``,
    and ``s * lr`` (constant if the escape rate is proportional to the learning rate).

    >>> rows = [dict(K=2, M=2, lr=0.5, d=d, t_escape=10 + 4 * math.log(d)) for d in (1e2, 1e3, 1e4)]
    >>> [round(f["slope"], 6) for f in length_fits(rows)]
    [4.0]
    """
    fits = []
    keys = sorted({(r["K"], r["M"], r["lr"]) for r in rows})
    for K, M, lr in keys:
        pts = [(r["d"], r["t_escape"]) for r in rows if (r["K"], r["M"], r["lr"]) == (K, M, lr)
               and math.isfinite(r["t_escape"])]
        if len({d for d, _ in pts}) < 3:
            continue
        x, y = np.log([d for d, _ in pts]), np.array([t for _, t in pts])
        slope, intercept = np.polyfit(x, y, 1)
        resid = float(np.max(np.abs(y - (intercept + slope * x))))
        fits.append(dict(K=K, M=M, lr=lr, slope=float(slope), intercept=float(intercept),
                         slope_times_lr=float(slope * lr), max_residual=resid, points=len(pts)))
    return fits


def _fmt(x, spec=".4g"):
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else ("inf" if x == math.inf else
                                                                            format(x, spec))


def markdown_table(rows: list, fits: list = ()) -> str:
    """The per-curve table (and the length fits) as markdown.

    >>> print(markdown_table([]).splitlines()[0][:13])
    | K | M | d |
    """
    head = ("| K | M | d | lr | fixed point eps_g | 1-D symmetric eps_g | ODE plateau eps_g | Hessian index | "
            "lambda_min | t plateau | t escape | length | final eps_g | sim vs ODE (max gap / sem) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append("| " + " | ".join([
            str(r["K"]), str(r["M"]), _fmt(r["d"], "g"), _fmt(r["lr"], "g"), _fmt(r["fixed_point_height"], ".6f"),
            _fmt(r.get("symmetric_height_1d"), ".6f"), _fmt(r["ode_plateau_height"], ".5f"), str(r["index"]),
            _fmt(r["lambda_min"], ".3g"), _fmt(r["t_plateau"], ".4g"), _fmt(r["t_escape"], ".4g"),
            _fmt(r["length"], ".4g"), _fmt(max(r["final_eps"], 0.0), ".2e"),
            _fmt(r.get("sim_max_gap_in_sem"), ".2f")]) + " |")
    if fits:
        lines += ["", "| K | M | lr | t_escape = c + s ln d: s | c | s * lr | max residual | points |",
                  "|---|---|---|---|---|---|---|---|"]
        for f in fits:
            lines.append(f"| {f['K']} | {f['M']} | {f['lr']:g} | {f['slope']:.4g} | {f['intercept']:.4g} | "
                         f"{f['slope_times_lr']:.4g} | {f['max_residual']:.3g} | {f['points']} |")
    return "\n".join(lines) + "\n"


def _figures(run: RunFolder, cfg: PlateauConfig, cells):
    import matplotlib.pyplot as plt

    from earnshaw.experiments.plateau import plateau_figure

    arrays = {cid: run.cell_arrays(cid) for cid, _, _ in cells if run.done(cid)}
    rows = {r["cell"]: r for r in run.rows()}
    varying = [name for name, values in (("K", {K for K, _ in cfg.sizes}), ("M", {M for _, M in cfg.sizes}),
                                         ("d", set(cfg.d)), ("lr", set(cfg.lr))) if len(values) > 1]
    units = "g = erf(x/sqrt 2), T = I" if cfg.activation == "erf" and cfg.tau == 0.5 else f"T = {cfg.tau:g} I"
    out = run.figures_dir()
    # one figure per learning rate when one figure would hold too many curves
    if len(cfg.lr) > 1 and len(cells) > 8:
        groups = {lr: [c for c in cells if c[2][3] == lr and c[0] in arrays] for lr in cfg.lr}
    else:
        groups = {None: [c for c in cells if c[0] in arrays]}
    for lr, group in groups.items():
        curves, bands, levels = {}, {}, {}
        for cid, _, (K, M, d, lr_) in group:
            label = ", ".join(f"{n} = {v:g}" for n, v in zip(("K", "M", "d", "lr"), (K, M, d, lr_))
                              if n in varying) or f"K = {K}, M = {M}"
            a = arrays[cid]
            curves[label] = (a["ts"], a["eps"])
            levels[label] = rows[cid]["fixed_point_height"]
            if "sim_ts" in a:
                bands[label] = (a["sim_ts"], a["sim_mean"], a["sim_sem"])
        fixed = [f"{n} = {v:g}" for n, v in (("lr", group[0][2][3]), ("d", group[0][2][2])) if n not in varying]
        title = (f"{cfg.name}: {units}, lr_a = {cfg.lr_a:g}" + (", " if fixed else "")
                 + ", ".join(fixed) + f"\nODE (lines), simulation ± 2 sem (dots), fixed point (dotted), clipped at "
                 f"{FLOOR:g}")
        fig = plateau_figure(curves, title=title, bands=bands, levels=levels, floor=FLOOR)
        fig.savefig(out / ("eps_g.png" if lr is None else f"eps_g-lr{lr:g}.png"), dpi=150)
        plt.close(fig)
    if len(cfg.d) > 1:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for K, M in cfg.sizes:
            for lr in cfg.lr:
                pts = sorted((r["d"], r["t_escape"]) for r in rows.values()
                             if (r["K"], r["M"], r["lr"]) == (K, M, lr) and math.isfinite(r["t_escape"]))
                if pts:
                    ax.semilogx(*zip(*pts), "o-", label=f"K = {K}, M = {M}, lr = {lr:g}")
        ax.set_xlabel("d (initial overlaps R ~ 1 / sqrt d)")
        ax.set_ylabel("escape time  t = steps / d")
        ax.set_title(f"{cfg.name}: end of the plateau against d", fontsize=10)
        ax.legend(fontsize=8, frameon=False)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "length.png", dpi=150)
        plt.close(fig)


def _finite(data):
    """Plain JSON: an infinite escape time (the plateau never ended within ``t1``) as ``"inf"``, NaN as null."""
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None if math.isnan(data) else ("inf" if data > 0 else "-inf")
    return data


def dumps(data) -> str:
    """``data`` as standard JSON (see ``_finite``)."""
    return json.dumps(_finite(data), indent=2, default=str)

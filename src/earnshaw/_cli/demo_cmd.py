"""``earnshaw demo``: the main job on defaults."""
from __future__ import annotations

import json
import time
from typing import Optional

import typer
from rich.table import Table

from earnshaw._cli.common import backend_options, cell_progress, console, enable_x64, start_or_resume


def print_summary(summary: dict, config: dict):
    """The demo's tables (outcome fractions, loss and distance quantiles) and its timings.

    ``summary`` and ``config`` as stored in a demo run folder's ``meta.json``."""
    fr = summary["fractions"]
    table = Table(title=f"{config['activation']} teacher, d={config['d']}, k={config['k']}: {config['seeds']} "
                        f"student seeds (gradient flow to t={config['t1']:g}, then Newton)")
    table.add_column("outcome")
    table.add_column("fraction", justify="right")
    table.add_column("seeds", justify="right")
    counts = summary.get("counts", {})
    for name in ("recovered all units", "global minimum", "spurious local minimum", "saddle", "escaping",
                 "not converged"):
        if name in fr:
            table.add_row(name, f"{fr[name]:.3f}", str(counts.get(name, "")))
    console.print(table)
    if counts:
        idx = summary.get("saddle_index_counts", {})
        console.print("saddles by Hessian index: " + (", ".join(f"index {i}: {c}" for i, c in idx.items()) or "none")
                      + f"; not converged because the flow's budget ran out: "
                        f"{counts.get('not converged (budget ran out)', 0)} of {counts.get('not converged', 0)}; "
                        "escaping: two units merging with opposite, growing output weights (rows: escape_*)")
    q = Table(title="quantiles over seeds")
    q.add_column("")
    for p in ("min", "median", "90%", "max"):
        q.add_column(p, justify="right")
    q.add_row("final loss", *(f"{v:.2e}" for v in summary["loss_quantiles"].values()))
    q.add_row("max unit distance", *(f"{v:.2e}" for v in summary["distance_quantiles"].values()))
    console.print(q)
    tm = summary["timings"]
    console.print(f"flow {tm['flow_s']:.1f} s, Newton + analysis {tm['refine_analyze_s']:.1f} s, "
                  f"total {tm['total_s']:.1f} s")


def show_results(run, as_json: bool):
    """``earnshaw results`` on a demo folder: the tables the demo printed."""
    summary = run.meta["summary"]
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary, run.meta["config"])


def register(app: typer.Typer):
    @app.command()
    def demo(
        activation: str = typer.Option("erf", help="activation of teacher and student"),
        d: int = typer.Option(10, help="input dimension"),
        k: int = typer.Option(5, help="units in teacher and student"),
        seeds: int = typer.Option(1000, help="number of student seeds"),
        seed: int = typer.Option(0, help="master PRNG seed (teacher and students)"),
        t1: float = typer.Option(1e6, help="gradient-flow time horizon"),
        solver: str = typer.Option("kvaerno3", help="ODE solver: kvaerno3/kvaerno5 (implicit, stiff) or tsit5, ..."),
        out: str = typer.Option("runs", help="parent folder of the run folder"),
        resume: Optional[str] = typer.Option(None, "--resume", help="continue this demo run folder (its own "
                                                                    "config; finished chunks are kept)"),
        backend: str = typer.Option("local", "--backend", help="local or ray"),
        address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (--backend ray)"),
        workers: int = typer.Option(1, "--workers", help="local backend: chunks computed at once, each in "
                                                         "its own process"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress"),
        as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    ):
        """Random teacher, many student seeds: gradient flow, Newton polish, landscape verdicts."""
        from earnshaw.experiments.demo import COMMAND, DemoConfig, run_demo
        from earnshaw.runtime import Reporter
        from earnshaw.store import RunFolder

        backend_options(backend, address, workers)
        enable_x64()
        run, cfg = start_or_resume(resume, COMMAND, DemoConfig, lambda: DemoConfig(
            activation=activation, d=d, k=k, seeds=seeds, seed=seed, t1=t1, solver=solver, chunk=min(250, seeds)))
        start = time.perf_counter()
        with Reporter("demo", unit="chunks", enabled=not quiet) as rep:
            summary = run_demo(cfg, out, run=run, backend=backend, address=address, workers=workers,
                               progress=cell_progress(rep))
        summary["timings"]["total_s"] = time.perf_counter() - start
        folder = summary.pop("run_dir")
        meta_run = RunFolder.open(folder)
        meta_run.update_meta(summary=summary)
        if as_json:
            print(json.dumps(summary, indent=2))
            return
        print_summary(summary, cfg.model_dump())
        console.print(f"wrote {folder}/ (results.parquet, cells/, meta.json, config.toml, figures/)")

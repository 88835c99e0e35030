"""``earnshaw demo``: the main job on defaults."""
from __future__ import annotations

import dataclasses
import json
import time

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from earnshaw._cli.common import console, enable_x64, environment, fail, run_dir


def print_summary(summary: dict, config: dict):
    """The demo's tables (outcome fractions, loss and distance quantiles) and its timings.

    ``summary`` and ``config`` as stored in a demo run folder's ``meta.json``."""
    fr = summary["fractions"]
    table = Table(title=f"{config['activation']} teacher, d={config['d']}, k={config['k']}: {config['seeds']} "
                        f"student seeds (gradient flow to t={config['t1']:g}, then Newton)")
    table.add_column("outcome")
    table.add_column("fraction", justify="right")
    for name in ("recovered all units", "global minimum", "spurious local minimum", "saddle", "not converged"):
        table.add_row(name, f"{fr[name]:.3f}")
    console.print(table)
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
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
        as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
    ):
        """Random teacher, many student seeds: gradient flow, Newton polish, landscape verdicts."""
        enable_x64()
        from earnshaw import store
        from earnshaw.experiments.demo import DemoConfig, run_demo

        try:
            cfg = DemoConfig(activation=activation, d=d, k=k, seeds=seeds, seed=seed, t1=t1, solver=solver,
                             chunk=min(250, seeds))
            from earnshaw.potentials import potential

            potential(activation)
        except ValueError as err:
            fail(str(err))
        folder = run_dir("demo", out)
        start = time.perf_counter()
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, disable=quiet or as_json) as bar:
            tasks = {}

            def progress(phase, done, total):
                if phase not in tasks:
                    tasks[phase] = bar.add_task(phase, total=total)
                bar.update(tasks[phase], completed=done)

            progress("gradient flow", 0, -(-seeds // cfg.chunk))
            summary = run_demo(cfg, folder, progress=progress)
        summary["timings"]["total_s"] = time.perf_counter() - start
        store.write_json_atomic(folder / "meta.json", dict(command="demo", config=dataclasses.asdict(cfg),
                                                           environment=environment(), summary=summary))
        store.write_text_atomic(folder / "config.toml", "".join(f"{k_} = {json.dumps(v)}\n"
                                                                for k_, v in dataclasses.asdict(cfg).items()
                                                                if v is not None))
        if as_json:
            print(json.dumps(summary, indent=2))
            return
        print_summary(summary, dataclasses.asdict(cfg))
        console.print(f"wrote {folder}/ (results.parquet, meta.json, config.toml, figures/)")

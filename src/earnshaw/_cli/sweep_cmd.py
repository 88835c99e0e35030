"""``earnshaw run``, ``sweep``, ``results`` and ``animate``: experiments from TOML configs, their results store."""
from __future__ import annotations

import json
import math
import pathlib
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from earnshaw._cli.common import console, enable_x64, fail, run_dir

_SHORT = {"global minimum": "global", "spurious local minimum": "spurious", "saddle": "saddle",
          "not converged": "not conv."}


def results_table(summary: list, axes: list, title: str) -> Table:
    """Per-cell table: grid values, seeds, success rate with its Wilson 95% interval, verdict fractions."""
    from rich import box

    t = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
    t.add_column("cell", no_wrap=True)
    for a in axes:
        t.add_column(a, justify="right", no_wrap=True)
    for name in ("seeds", "success [95% CI]", *_SHORT.values(), "median loss", "time (s)"):
        t.add_column(name, justify="right", no_wrap=True)
    for s in summary:
        t.add_row(s["cell"][:8], *(str(s.get(a)) for a in axes), str(s["seeds"]),
                  f"{s['success_rate']:.2f} [{s['ci_low']:.2f}, {s['ci_high']:.2f}]",
                  *(f"{s[v]:.2f}" for v in _SHORT), f"{max(s['median_loss'], 0.0):.1e}",
                  "" if not math.isfinite(s["time_cell_s"]) else f"{s['time_cell_s']:.1f}")
    return t


def _print_table(table: Table):
    """Print a wide table whole, also when stdout is not a terminal (rich would squeeze it to 80 columns)."""
    from rich.measure import Measurement

    width = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if console.is_terminal or width <= console.width:
        console.print(table)
    else:
        from rich.console import Console

        Console(width=width, file=console.file, color_system=None).print(table)


def _load(config: str):
    from earnshaw.experiments.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as err:
        fail(f"invalid config {config}:\n{err}")


def _execute(cfg, folder: pathlib.Path, *, backend: str, address: Optional[str], quiet: bool, as_json: bool,
             figures: bool, command: str):
    from earnshaw.experiments.config import ConfigError
    from earnshaw.experiments.sweep import run_sweep

    enable_x64()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, disable=quiet or as_json) as bar:
        task = {}

        def progress(ev):
            if ev["event"] == "start":
                task["id"] = bar.add_task(f"{command}: cells", total=ev["total"], completed=ev["done"])
                if not quiet and not as_json and ev["done"]:
                    console.print(f"resuming {ev['run_dir']}: {ev['done']} of {ev['total']} cells already done")
            else:
                bar.update(task["id"], completed=ev["done"], description=f"{command}: {ev['label']}")

        try:
            out = run_sweep(cfg, folder, backend=backend, address=address, progress=progress, figures=figures)
        except (ConfigError, RuntimeError, ValueError) as err:
            fail(str(err))
    if as_json:
        print(json.dumps(out, indent=2, default=str))
        return
    if quiet:
        return
    axes = cfg.axes()
    _print_table(results_table(out["summary"], axes, f"{cfg.name}: {cfg.potential_name}, "
                                f"{cfg.algorithm.name}, {cfg.seeds} seeds per cell"))
    console.print(f"computed {len(out['computed'])} cells in {out['seconds']:.1f} s"
                  + (f", skipped {len(out['skipped'])} finished" if out["skipped"] else ""))
    console.print(f"wrote {folder}/ (results.parquet, cells/, meta.json, config.toml"
                  + (", figures/)" if figures else ")"))


def register(app: typer.Typer):
    @app.command()
    def run(
        config: str = typer.Argument(..., help="TOML config of one experiment (no [grid])"),
        out: str = typer.Option("runs", help="parent folder of the run folder"),
        figures: bool = typer.Option(True, "--figures/--no-figures", help="write figures/ at the end"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar or table"),
        as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    ):
        """One experiment from a TOML config: all seeds in one batched call, Newton polish, verdicts."""
        cfg = _load(config)
        n = 1
        for values in cfg.grid.values():
            n *= len(values)
        if n > 1:
            fail(f"{config} has a [grid] with {n} cells; run it with `earnshaw sweep {config}`")
        _execute(cfg, run_dir(cfg.name, out), backend="local", address=None, quiet=quiet, as_json=as_json,
                 figures=figures, command="run")

    @app.command()
    def sweep(
        config: Optional[str] = typer.Argument(None, help="TOML config with a [grid] (optional with --resume)"),
        backend: str = typer.Option("local", "--backend", help="local (this process) or ray"),
        address: Optional[str] = typer.Option(None, "--address",
                                              help="Ray cluster address, e.g. ray://host:10001 or auto "
                                                   "(default: start a local Ray)"),
        resume: Optional[str] = typer.Option(None, "--resume", help="continue this run folder (finished cells "
                                                                    "are not recomputed); with CONFIG, a new "
                                                                    "folder is started there"),
        out: str = typer.Option("runs", help="parent folder of a new run folder"),
        figures: bool = typer.Option(True, "--figures/--no-figures", help="write figures/ at the end"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar or table"),
        as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    ):
        """A grid of experiments: each cell's seeds run as one batched call; atomic, resumable results."""
        from earnshaw.experiments.config import ConfigError, canonical_json
        from earnshaw.experiments.sweep import BACKENDS, load_run_config

        if backend not in BACKENDS:
            fail(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if address is not None and backend != "ray":
            fail("--address is for --backend ray")
        if resume is not None and config is not None and not (pathlib.Path(resume) / "config.toml").exists():
            cfg = _load(config)  # a new folder: start the sweep there (so scripts can always pass --resume)
            folder = pathlib.Path(resume)
        elif resume is not None:
            folder = pathlib.Path(resume)
            try:
                cfg = load_run_config(folder)
            except ConfigError as err:
                fail(str(err))
            if config is not None:
                given = _load(config)
                if canonical_json(given.model_dump(mode="json")) != canonical_json(cfg.model_dump(mode="json")):
                    fail(f"{config} differs from the config of {resume}; resume without CONFIG to use the "
                         "stored one, or start a new sweep")
        elif config is None:
            fail("give a CONFIG.toml, or --resume RUN_DIR")
        else:
            cfg = _load(config)
            folder = run_dir(cfg.name, out)
        _execute(cfg, folder, backend=backend, address=address, quiet=quiet, as_json=as_json, figures=figures,
                 command="sweep")

    @app.command()
    def results(
        run_dir_: str = typer.Argument(..., metavar="RUN_DIR",
                                       help="a run folder of earnshaw run, sweep, demo, verify or reproduce"),
        as_json: bool = typer.Option(False, "--json", help="print the per-cell summary as JSON"),
    ):
        """Summarise a run: per cell, the success rate with a Wilson 95% interval and the verdicts.

        Demo, verify and reproduce run folders print the tables their command printed."""
        from earnshaw.experiments.config import ConfigError
        from earnshaw.experiments.sweep import cells_of, load_rows, load_run_config, summarise

        if not pathlib.Path(run_dir_).is_dir():
            fail(f"{run_dir_}: no such run folder")
        try:
            if _print_other_run(pathlib.Path(run_dir_), as_json):
                return
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            # a truncated or hand-edited meta.json / CSV: say which file, not a traceback
            fail(f"{run_dir_}: unreadable run folder ({type(err).__name__}: {err})")
        try:
            cfg = load_run_config(run_dir_)
        except ConfigError as err:
            fail(str(err))
        rows = load_rows(run_dir_, from_cells=True)
        summary = summarise(rows, cfg.axes())
        if as_json:
            print(json.dumps(summary, indent=2, default=str))
            return
        total = len(cells_of(cfg))
        _print_table(results_table(summary, cfg.axes(), f"{cfg.name}: {cfg.potential_name}, {cfg.algorithm.name}"
                                    f" ({len(summary)} of {total} cells finished)"))
        console.print("success = every teacher unit recovered; interval: Wilson score, 95%")

    @app.command()
    def animate(
        run_dir_: str = typer.Argument(..., metavar="RUN_DIR", help="a run folder of earnshaw run/sweep"),
        cell: Optional[str] = typer.Option(None, "--cell", help="cell id (default: the first finished cell)"),
        seed: int = typer.Option(0, "--seed", help="seed index within the cell (one of the first save_paths)"),
        out: Optional[str] = typer.Option(None, "--out", help="output GIF (default RUN_DIR/figures/...)"),
        fps: int = typer.Option(12, "--fps", help="frames per second"),
    ):
        """A GIF of one seed's electrons moving among the protons (teacher plane)."""
        from earnshaw import plot
        from earnshaw.experiments.config import ConfigError
        from earnshaw.experiments.sweep import cells_of, load_cell_arrays, load_run_config

        try:
            cfg = load_run_config(run_dir_)
        except ConfigError as err:
            fail(str(err))
        cells = cells_of(cfg)
        done = [c for c in cells if (pathlib.Path(run_dir_) / "cells" / f"{c.id}.npz").exists()
                and (pathlib.Path(run_dir_) / "cells" / f"{c.id}.parquet").exists()]
        if not done:
            fail(f"{run_dir_} has no finished cell yet")
        if cell is None:
            chosen = done[0]
        else:
            match = [c for c in done if c.id.startswith(cell)]
            if len(match) != 1:
                fail(f"cell {cell!r} {'is ambiguous' if match else 'is not a finished cell'}; finished cells: "
                     + ", ".join(f"{c.id} ({c.label()})" for c in done))
            chosen = match[0]
        arr = load_cell_arrays(run_dir_, chosen.id)
        n_paths = arr["path_theta"].shape[0]
        if not 0 <= seed < n_paths:
            fail(f"seed {seed} has no saved path: cell {chosen.id} kept the first {n_paths} seeds "
                 "(raise save_paths in the config)")
        saved = arr["saved"][seed]
        frames = max(int(saved.sum()), 2)
        path = pathlib.Path(out) if out else (pathlib.Path(run_dir_) / "figures" /
                                              f"animation-{chosen.id}-seed{seed}.gif")
        plot.animate_charges(arr["path_theta"][seed][:frames], arr["teacher_w"], path,
                             a=arr["path_a"][seed][:frames], b=arr["teacher_b"], ts=arr["ts"][seed][:frames],
                             fps=fps, title=f"{cfg.potential_name}: {chosen.label()}, seed {seed}")
        console.print(f"wrote {path} ({frames} frames)")


def _print_other_run(folder: pathlib.Path, as_json: bool) -> bool:
    """Print a demo, verify or reproduce run folder's results as its command did; False for other folders."""
    from earnshaw import store

    meta = store.read_json(folder / "meta.json") if (folder / "meta.json").is_file() else {}
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("command") == "demo":
        from earnshaw._cli.demo_cmd import print_summary

        if as_json:
            print(json.dumps(meta["summary"], indent=2))
        else:
            print_summary(meta["summary"], meta["config"])
        return True
    if meta.get("command") == "verify":
        from rich.console import Console

        from earnshaw._cli.verify_cmd import render

        rows = meta["rows"]
        if as_json:
            print(json.dumps([{k: v for k, v in r.items() if k != "details"} for r in rows], indent=2))
        else:
            Console(width=max(console.width, 240)).print(render(rows, title=f"earnshaw verify ({folder.name})"))
            passed = sum(r["verdict"] == "PASS" for r in rows)
            console.print(f"{passed}/{len(rows)} claims pass")
        return True
    if (folder / "config.json").is_file():
        from earnshaw._cli.reproduce_cmd import results_table
        from earnshaw.experiments import section5 as s5

        target, cfg, rows = s5.load_rows(folder)
        if not rows:
            fail(f"{folder} has no finished cell yet: continue it with earnshaw reproduce {target} --resume {folder}")
        if as_json:
            print(json.dumps({"run_dir": str(folder), "rows": rows}, indent=2))
        else:
            console.print(results_table(target, rows, cfg))
        return True
    return False


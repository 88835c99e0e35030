"""``earnshaw run``, ``sweep`` and ``animate``: experiments from TOML configs, their results store."""
from __future__ import annotations

import json
import math
import pathlib
from typing import Optional

import typer
from rich.table import Table

from rich.markup import escape

from earnshaw._cli.common import backend_options, cell_progress, console, enable_x64, fail

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


def _execute(cfg, folder, *, backend: str, address: Optional[str], workers: int, quiet: bool, as_json: bool,
             figures: bool, command: str):
    from earnshaw.experiments.config import ConfigError
    from earnshaw.experiments.sweep import run_sweep
    from earnshaw.runtime import Reporter

    enable_x64()
    with Reporter(command, unit="cells", enabled=not quiet) as rep:
        try:
            out = run_sweep(cfg, folder, backend=backend, address=address, workers=workers,
                            progress=cell_progress(rep), figures=figures, invoked_as=command)
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
    console.print(f"wrote {out['run_dir']}/ (results.parquet, cells/, meta.json, config.toml"
                  + (", figures/)" if figures else ")"))


def _new_folder(out: str, name: str) -> pathlib.Path:
    """``<out>/<name>-<time>``: the folder is made by the run, after everything is validated."""
    import datetime as _dt

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, i = pathlib.Path(out) / f"{name}-{stamp}", 1
    while path.exists():
        path, i = pathlib.Path(out) / f"{name}-{stamp}-{i}", i + 1
    return path


def show_results(run, as_json: bool):
    """``earnshaw results`` on a sweep (or run) folder: per cell, the success rate and the verdicts."""
    from earnshaw.experiments.config import parse_config
    from earnshaw.experiments.sweep import cells_of, summarise

    cfg = parse_config(run.config_data())
    summary = summarise(run.rows(), cfg.axes())
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    total = len(cells_of(cfg))
    _print_table(results_table(summary, cfg.axes(), f"{cfg.name}: {cfg.potential_name}, {cfg.algorithm.name}"
                                f" ({len(summary)} of {total} cells finished)"))
    console.print("success = every teacher unit recovered; interval: Wilson score, 95%")


def register(app: typer.Typer):
    @app.command()
    def run(
        config: str = typer.Argument(..., help=escape("TOML config of one experiment (no [grid])")),
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
            fail(f"{config} has a \\[grid] with {n} cells; run it with `earnshaw sweep {config}`")
        _execute(cfg, _new_folder(out, cfg.name), backend="local", address=None, workers=1, quiet=quiet,
                 as_json=as_json, figures=figures, command="run")

    @app.command()
    def sweep(
        config: Optional[str] = typer.Argument(None, help=escape("TOML config with a [grid] (optional with "
                                                                 "--resume)")),
        backend: str = typer.Option("local", "--backend", help="local (this process, or --workers processes) "
                                                               "or ray"),
        address: Optional[str] = typer.Option(None, "--address",
                                              help="Ray cluster address, e.g. 127.0.0.1:6379, ray://host:10001 "
                                                   "or auto (default: start a local Ray)"),
        workers: int = typer.Option(1, "--workers", help="local backend: cells computed at once, each in its "
                                                         "own process"),
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
        from earnshaw.experiments.sweep import load_run_config

        backend_options(backend, address, workers)
        if resume is not None and config is not None and not (pathlib.Path(resume) / "meta.json").exists():
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
            folder = _new_folder(out, cfg.name)
        _execute(cfg, folder, backend=backend, address=address, workers=workers, quiet=quiet, as_json=as_json,
                 figures=figures, command="sweep")

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
        from earnshaw.experiments.config import ConfigError, parse_config
        from earnshaw.experiments.sweep import cells_of, open_run

        try:
            run = open_run(run_dir_)
            cfg = parse_config(run.config_data())
        except ConfigError as err:
            fail(str(err))
        cells = cells_of(cfg)
        done = [c for c in cells if run.done(c.id)]
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
        arr = run.cell_arrays(chosen.id)
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



"""``earnshaw plateau [CONFIG|PRESET]``: online SGD's plateau (curves, symmetric fixed point, length), resumable."""
from __future__ import annotations

import json
import pathlib
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from earnshaw._cli.common import backend_options, cell_progress, console, enable_x64, fail, start_or_resume
from earnshaw._cli.sweep_cmd import _print_table


def results_table(rows: list, title: str) -> Table:
    """Per curve: the fixed point (height, index), the ODE's plateau, its escape time, the simulation's gap."""
    t = Table(title=title)
    for col in ("K", "M", "d", "lr", "fixed point eps_g", "1-D check", "ODE plateau", "index", "lambda_min",
                "t escape", "length", "final eps_g", "sim gap / sem"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        sim = r.get("sim_max_gap_in_sem")
        t.add_row(str(r["K"]), str(r["M"]), f"{r['d']:g}", f"{r['lr']:g}", f"{r['fixed_point_height']:.6f}",
                  "" if r.get("symmetric_height_1d") != r.get("symmetric_height_1d") or r.get(
                      "symmetric_height_1d") is None else f"{r['symmetric_height_1d']:.6f}",
                  f"{r['ode_plateau_height']:.5f}", str(r["index"]), f"{r['lambda_min']:.2e}",
                  f"{r['t_escape']:.4g}", f"{r['length']:.4g}", f"{max(r['final_eps'], 0.0):.1e}",
                  "" if sim is None or sim != sim else f"{sim:.2f}")
    return t


def _parse_value(text: str):
    """``--set`` values: JSON (numbers, lists such as ``[[2,2],[3,3]]``, true/false), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _config(source: Optional[str], overrides: List[str]):
    """The config from a preset name or a TOML file, with ``--set key=value`` overrides, validated."""
    import tomllib

    from earnshaw.experiments.plateau_run import PRESETS, PlateauConfig

    if source is None or source in PRESETS:
        data = (PRESETS[source] if source else PlateauConfig()).model_dump()
    elif pathlib.Path(source).is_file():
        try:
            data = tomllib.loads(pathlib.Path(source).read_text())
        except tomllib.TOMLDecodeError as err:
            fail(f"{source}: not valid TOML ({err})")
    else:
        fail(f"{source!r} is neither a preset ({', '.join(PRESETS)}) nor a TOML file")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--set takes key=value, got {item!r}")
        data[key.strip()] = _parse_value(value.strip())
    return PlateauConfig.model_validate(data)


def show_results(run, as_json: bool):
    """``earnshaw results`` on a plateau folder: the table plateau printed."""
    from earnshaw.experiments.plateau_run import dumps, length_fits

    rows = run.rows()
    if as_json:
        print(dumps({"rows": rows, "length_fits": length_fits(rows)}))
        return
    _print_table(results_table(rows, f"earnshaw plateau ({run.path.name})"))


def register(app: typer.Typer):
    @app.command()
    def plateau(
        source: Optional[str] = typer.Argument(None, metavar="[CONFIG|PRESET]",
                                               help=escape("a preset (saad-solla, overparam, length) or a TOML "
                                                           "config; default: the saad-solla sizes")),
        set_: List[str] = typer.Option([], "--set", help="override a config field, e.g. --set 'sizes=[[2,2]]' "
                                                         "--set t1=500 (repeatable)"),
        out: str = typer.Option("runs", help="parent folder of the run folder"),
        resume: Optional[str] = typer.Option(None, "--resume", help="continue this plateau run folder (its own "
                                                                    "config; finished curves are kept)"),
        backend: str = typer.Option("local", "--backend", help="local or ray"),
        address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (--backend ray)"),
        workers: int = typer.Option(1, "--workers", help="local backend: curves computed at once, each in its "
                                                         "own process"),
        figures: bool = typer.Option(True, "--figures/--no-figures", help="write figures/ at the end"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress or table"),
        as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
    ):
        """Online SGD's plateau: eps_g against t = steps / d (ODE, optional simulation), the symmetric fixed
        point by Newton (height, Hessian index), and the plateau's length against d and the learning rate."""
        from earnshaw.experiments.plateau_run import COMMAND, PlateauConfig, dumps, run_plateau
        from earnshaw.runtime import Reporter
        from earnshaw.trajectory import DivergenceError

        backend_options(backend, address, workers)
        enable_x64()
        if resume is not None and (source is not None or set_):
            fail("--resume continues a folder with its own config; give no CONFIG/PRESET or --set with it")

        run, cfg = start_or_resume(resume, COMMAND, PlateauConfig, lambda: _config(source, set_))
        with Reporter("plateau", unit="curves", enabled=not quiet) as rep:
            try:
                res = run_plateau(cfg, out, run=run, backend=backend, address=address, workers=workers,
                                  progress=cell_progress(rep), figures=figures)
            except DivergenceError as err:
                fail(f"{err}; lower the learning rate (--set 'lr=[...]')")
        if as_json:
            print(dumps({k: res[k] for k in ("rows", "length_fits", "computed", "skipped", "run_dir")}))
            return
        if quiet:
            return
        _print_table(results_table(res["rows"], f"{cfg.name}: {cfg.activation}, T = {cfg.tau:g} I, "
                                                 f"lr_a = {cfg.lr_a:g} (eps_g = L / 2)"))
        for f in res["length_fits"]:
            console.print(f"K = {f['K']}, M = {f['M']}, lr = {f['lr']:g}: t_escape = {f['intercept']:.3g} + "
                          f"{f['slope']:.3g} ln d (slope x lr = {f['slope_times_lr']:.3g})")
        console.print(f"computed {len(res['computed'])} curves in {res['seconds']:.1f} s"
                      + (f", skipped {len(res['skipped'])} finished" if res["skipped"] else "")
                      + f"; wrote {res['run_dir']}/ (results.parquet, plateau.md, plateau.json, cells/"
                      + (", figures/)" if figures else ")"))

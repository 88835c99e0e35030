"""``earnshaw census CONFIG | PRESET``: the distinct critical points GD reaches, per (activation, k, n) cell."""
from __future__ import annotations

import pathlib
import tomllib
from typing import Optional

import typer

from earnshaw._cli.common import (backend_options, cell_progress, console, enable_x64, fail, start_or_resume,
                                  validation_message)


def parse_range(text: Optional[str]):
    """``"6..8"`` -> ``[6, 7, 8]``, ``"6,9,12"`` -> ``[6, 9, 12]``, ``"7"`` -> ``[7]``; None stays None.

    >>> parse_range("6..8"), parse_range("4,6"), parse_range(None)
    ([6, 7, 8], [4, 6], None)
    """
    if text is None:
        return None
    try:
        if ".." in text:
            lo, hi = (int(v) for v in text.split(".."))
            return list(range(lo, hi + 1))
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a range like 6..8 or a list like 6,9,12, got {text!r}") from None


def build_config(source: str, **overrides):
    """The :class:`CensusConfig` of a preset name or a TOML file, with the command line's overrides."""
    from earnshaw.experiments.census import PRESETS, CensusConfig

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if source in PRESETS:
        data = dict(PRESETS[source])
    else:
        path = pathlib.Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{source!r} is neither a preset ({', '.join(PRESETS)}) nor a config file")
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    data.update(overrides)
    return CensusConfig.model_validate(data)


def render(rows) -> str:
    from earnshaw.experiments.census.report import markdown

    return markdown(rows)


def show_results(run, as_json: bool):
    """``earnshaw results`` on a census folder: its tables."""
    from earnshaw.experiments.census.report import summary_json

    rows = run.rows()
    if as_json:
        print(summary_json(rows))
        return
    print(render(rows))


def register(app: typer.Typer):
    @app.command()
    def census(
        source: Optional[str] = typer.Argument(None, metavar="CONFIG|PRESET",
                                               help="a census TOML file, or a preset: safran-shamir, "
                                                    "paper-activations"),
        k: Optional[str] = typer.Option(None, "--k", help="teacher sizes: 6..8 or 6,9,12 (overrides the config)"),
        seeds: Optional[int] = typer.Option(None, "--seeds", help="starts per cell"),
        activations: Optional[str] = typer.Option(None, "--activations", help="comma-separated activations"),
        extra_units: Optional[str] = typer.Option(None, "--extra-units", help="student has n = k + e units: 0,1"),
        max_steps: Optional[int] = typer.Option(None, "--max-steps", help="GD step limit per seed"),
        certify: Optional[bool] = typer.Option(None, "--certify/--no-certify", help="certify each family"),
        out: str = typer.Option("runs", help="parent folder of the run folder"),
        resume: Optional[str] = typer.Option(None, "--resume", help="continue this census folder (its own config; "
                                                                    "finished cells are kept)"),
        backend: str = typer.Option("local", "--backend", help="local or ray"),
        address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (--backend ray)"),
        workers: int = typer.Option(1, "--workers", help="local backend: cells computed at once, each in its own "
                                                         "process"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress"),
        as_json: bool = typer.Option(False, "--json", help="print the tables as JSON"),
    ):
        """Run many GD seeds per (activation, k, n), group the end points into distinct critical points modulo
        the symmetries, classify them by their Hessian and certify them in ball arithmetic."""
        from pydantic import ValidationError

        from earnshaw.experiments.census import COMMAND, CensusConfig, run_census
        from earnshaw.experiments.census.report import summary_json
        from earnshaw.runtime import Reporter

        backend_options(backend, address, workers)
        if source is None and resume is None:
            fail("give a CONFIG file or a PRESET (safran-shamir, paper-activations), or --resume RUN_DIR")
        if source is not None and resume is not None:
            fail("give either CONFIG|PRESET or --resume, not both")
        enable_x64()

        def build():
            try:
                return build_config(source, k=parse_range(k), seeds=seeds, max_steps=max_steps, certify=certify,
                                    extra_units=parse_range(extra_units),
                                    activations=None if activations is None else
                                    [a.strip() for a in activations.split(",") if a.strip()])
            except ValidationError as err:
                fail(validation_message(err))
            except (ValueError, FileNotFoundError, tomllib.TOMLDecodeError) as err:
                fail(str(err))

        run, cfg = start_or_resume(resume, COMMAND, CensusConfig, build)
        with Reporter("census", unit="cells", enabled=not quiet) as rep:
            result = run_census(cfg, out, run=run, backend=backend, address=address, workers=workers,
                                progress=cell_progress(rep))
        if as_json:
            print(summary_json(result["rows"]))
            return
        print(render(result["rows"]))
        console.print(f"{len(result['computed'])} cells computed, {len(result['skipped'])} resumed; "
                      f"{result['seconds']:.0f} s; wrote {result['run_dir']}/ (census.md, census.json, cells.csv, "
                      f"families.csv, results.parquet, figures/)")



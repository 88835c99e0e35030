"""``earnshaw verify``: the paper's theorems checked over many seeds, as one table (cf. the paper's Table 1)."""
from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from earnshaw._cli.common import backend_options, cell_progress, console, enable_x64, start_or_resume


def render(rows, title="earnshaw verify") -> Table:
    """The rich table of check rows."""
    table = Table(title=title, show_lines=True)
    for col, kw in (("check", {}), ("activation", {}), ("potential", {}), ("claim", {}), ("what was run", {}),
                    ("seeds", {"justify": "right"}), ("success", {"justify": "right"}), ("worst case", {}),
                    ("verdict", {})):
        table.add_column(col, **kw)
    for r in rows:
        verdict = "[bold green]PASS[/]" if r["verdict"] == "PASS" else "[bold red]FAIL[/]"
        table.add_row(r["check"], r["activation"], r["potential"], r["claim"], r["run"], str(r["seeds"]),
                      f"{100 * r['success']:.1f}%", r["worst"], verdict)
    return table


def show_results(run, as_json: bool):
    """``earnshaw results`` on a verify folder: the table verify printed."""
    rows = run.rows()
    if as_json:
        print(json.dumps([_public(r) for r in rows], indent=2))
        return
    Console(width=max(console.width, 240)).print(render(rows, title=f"earnshaw verify ({run.path.name})"))
    passed = sum(r["verdict"] == "PASS" for r in rows)
    console.print(f"{passed}/{len(rows)} claims pass")


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("details", "cell", "cell_index")}


def register(app: typer.Typer):
    @app.command()
    def verify(
        quick: bool = typer.Option(False, "--quick", help="fewer seeds and steps (about 1-2 minutes)"),
        seeds: int = typer.Option(None, help="seeds per check (default: per check, see experiments.verify)"),
        only: str = typer.Option(None, help="comma-separated subset of checks (theorem5, earnshaw, ...)"),
        as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
        out: str = typer.Option("runs", help="parent folder of the run folder"),
        resume: Optional[str] = typer.Option(None, "--resume", help="continue this verify run folder (its own "
                                                                    "config; finished checks are kept)"),
        backend: str = typer.Option("local", "--backend", help="local or ray"),
        address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (--backend ray)"),
        workers: int = typer.Option(1, "--workers", help="local backend: checks run at once, each in its own "
                                                         "process"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress"),
    ):
        """Check the paper's theorems (as corrected in docs/math.md) over many seeds; exit 1 if a claim fails."""
        from earnshaw.experiments.verify import COMMAND, VerifyConfig, run_verify
        from earnshaw.runtime import Reporter

        backend_options(backend, address, workers)
        enable_x64()
        names = None if not only else [n.strip() for n in only.split(",") if n.strip()]
        run, cfg = start_or_resume(resume, COMMAND, VerifyConfig,
                                   lambda: VerifyConfig(quick=quick, seeds=seeds, only=names),
                                   rename=lambda m: m.replace("only: ", "--only: ").replace("seeds: ", "--seeds: "))
        with Reporter("verify", unit="checks", enabled=not quiet) as rep:
            out_ = run_verify(cfg, out, run=run, backend=backend, address=address, workers=workers,
                              progress=cell_progress(rep))
        rows = out_["rows"]
        total = out_["seconds"]
        failed = [r["check"] for r in rows if r["verdict"] != "PASS"]
        if as_json:
            print(json.dumps([_public(r) for r in rows], indent=2))
        else:
            wide = Console(width=max(console.width, 240))
            wide.print(render(rows, title=f"earnshaw verify{' --quick' if cfg.quick else ''}: the paper's claims "
                                             f"over many seeds"))
            console.print(f"{len(rows) - len(failed)}/{len(rows)} claims pass; {total:.0f} s; wrote "
                          f"{out_['run_dir']}/ (results.parquet, cells/, meta.json, config.toml)")
        if failed:
            raise typer.Exit(1)

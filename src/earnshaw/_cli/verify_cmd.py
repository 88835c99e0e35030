"""``earnshaw verify``: the paper's theorems checked over many seeds, as one table (cf. the paper's Table 1)."""
from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from earnshaw._cli.common import console, enable_x64, environment, fail, run_dir


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


def register(app: typer.Typer):
    @app.command()
    def verify(
        quick: bool = typer.Option(False, "--quick", help="fewer seeds and steps (about 1-2 minutes)"),
        seeds: int = typer.Option(None, help="seeds per check (default: per check, see experiments.theorems)"),
        only: str = typer.Option(None, help="comma-separated subset of checks (theorem5, earnshaw, ...)"),
        as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
        out: str = typer.Option("runs", help="parent folder of the run folder"),
    ):
        """Check the paper's theorems (as corrected in MATH.md) over many seeds; exit 1 if a claim fails."""
        enable_x64()
        from earnshaw import store
        from earnshaw.experiments.theorems import CHECKS, table_rows, verify as run_verify

        names = None if not only else [n.strip() for n in only.split(",") if n.strip()]
        if names and any(n not in CHECKS for n in names):
            fail(f"unknown check in --only; valid: {', '.join(CHECKS)}")
        if seeds is not None and seeds < 1:
            fail("--seeds must be a positive integer")
        start = time.perf_counter()
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, disable=as_json, transient=True) as bar:
            task = bar.add_task("checks", total=len(names or CHECKS))

            def progress(name, done, total):
                bar.update(task, completed=done, description=f"check: {name}")

            rows = run_verify(quick=quick, seeds=seeds, only=names, progress=progress)
        total = time.perf_counter() - start
        flat = table_rows(rows)
        folder = run_dir("verify", out)
        store.write_parquet_atomic(folder / "results.parquet", flat)
        store.write_json_atomic(folder / "meta.json", dict(command="verify", quick=quick, seeds=seeds, only=names,
                                                           environment=environment(), total_s=total,
                                                           rows=flat))
        failed = [r["check"] for r in rows if r["verdict"] != "PASS"]
        if as_json:
            print(json.dumps([{k: v for k, v in r.items() if k != "details"} for r in flat], indent=2))
        else:
            wide = Console(width=max(console.width, 240))
            wide.print(render(rows, title=f"earnshaw verify{' --quick' if quick else ''}: the paper's claims "
                                             f"over many seeds"))
            console.print(f"{len(rows) - len(failed)}/{len(rows)} claims pass; {total:.0f} s; wrote {folder}/ "
                          "(results.parquet, meta.json)")
        if failed:
            raise typer.Exit(1)

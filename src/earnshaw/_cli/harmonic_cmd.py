"""``earnshaw harmonic``: where each named potential is harmonic-like (the sign of its Laplacian), per dimension."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from earnshaw._cli.common import console, enable_x64, fail


def _dims(text: str):
    try:
        dims = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"--d must be comma-separated integers >= 2, e.g. --d 2,3,5, got {text!r}")
    if not dims or any(d < 2 for d in dims):
        fail(f"--d must be comma-separated integers >= 2, e.g. --d 2,3,5, got {text!r}")
    return dims


def render(rows, dims, title) -> Table:
    """The rich table: one row per potential, one column per dimension (the share of the grid with lam > 0)."""
    from earnshaw.experiments.harmonic import cell

    table = Table(title=title, show_lines=False)
    table.add_column("potential")
    for d in dims:
        table.add_column(f"d = {d}", justify="right")
    by = {(r["name"], r["d"]): r for r in rows}
    for name in dict.fromkeys(r["name"] for r in rows):
        table.add_row(name, *(cell(by[name, d]) if (name, d) in by else "" for d in dims))
    return table


def _json_safe(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def save(rows, folder: Path, manifold: str) -> list:
    """``harmonic[-sphere].json`` (rows, with ``null`` for infinities and NaNs) and ``.csv`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = "harmonic" if manifold == "euclidean" else f"harmonic-{manifold}"
    keys = [k for k in rows[0] if k != "seconds"]
    out_json, out_csv = folder / f"{stem}.json", folder / f"{stem}.csv"
    # one row per line: compact, and diffs of a rerun show which rows changed
    out_json.write_text("[\n" + ",\n".join(json.dumps({k: _json_safe(r[k]) for k in keys}, ensure_ascii=False)
                                           for r in rows) + "\n]\n")
    with out_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return [out_json, out_csv]


def register(app: typer.Typer):
    @app.command()
    def harmonic(
        activations: Optional[str] = typer.Option(
            None, "--activations", "-a",
            help="comma-separated potential names (default: every named activation, hermite2-4, and the radial "
                 "gaussian, coulomb, yukawa, almost_harmonic)"),
        d: str = typer.Option("2,3,5,10,20,50", "--d", help="comma-separated dimensions of the table"),
        sweep: bool = typer.Option(False, "--sweep", help="also every d = 2..50 (in --json, --save and --plot)"),
        manifold: str = typer.Option("euclidean", "--manifold",
                                     help="euclidean (Laplacian in R^d) or sphere (Laplace-Beltrami on unit vectors)"),
        as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
        as_markdown: bool = typer.Option(False, "--markdown", help="print the tables as markdown"),
        save_dir: Optional[str] = typer.Option(None, "--save", help="write harmonic.json and harmonic.csv here"),
        plot: Optional[str] = typer.Option(None, "--plot", help="write a heatmap of the table to this PNG"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress"),
    ):
        """Where each potential is harmonic-like: the share of a grid of (|u|, |v|, angle) where Delta_u Phi has
        the sign of Phi (the local ratio lambda = Delta_u Phi / Phi > 0 that Theorems 9-11 rest on), per d."""
        from earnshaw.experiments.harmonic import DEFAULT_NAMES, SWEEP_DIMS, check_names, harmonic_table, markdown
        from earnshaw.potentials.harmonic import MANIFOLDS
        from earnshaw.runtime import Reporter

        enable_x64()
        dims = _dims(d)
        if manifold not in MANIFOLDS:
            fail(f"--manifold must be one of {', '.join(MANIFOLDS)}, got {manifold!r}")
        names = DEFAULT_NAMES if activations is None else [n.strip().lower() for n in activations.split(",")
                                                          if n.strip()]
        try:
            names = check_names(names)
        except ValueError as err:
            fail(str(err))
        all_dims = sorted(set(dims) | (set(SWEEP_DIMS) if sweep else set()))
        with Reporter("harmonic", unit="potentials", enabled=not quiet and not as_json and not as_markdown) as rep:
            rep.start(len(names))
            try:
                rows = harmonic_table(names, all_dims, manifold=manifold,
                                      progress=lambda i, name: rep.update(done=i + 1, description=name, force=True))
            except ValueError as err:
                fail(str(err))
        if not rows:
            fail("nothing to compute: radial potentials have no sphere Laplacian here (use --manifold euclidean)")
        shown = [r for r in rows if r["d"] in dims]
        if as_json:
            print(json.dumps([{k: _json_safe(v) for k, v in r.items()} for r in rows], indent=1))
        elif as_markdown:
            print(markdown(shown, dims))
        else:
            where = "on the unit sphere, Laplace-Beltrami" if manifold == "sphere" else "in R^d"
            Console(width=max(console.width, 120)).print(
                render(shown, dims, f"earnshaw harmonic: share of the grid where Delta_u Phi has the sign of Phi "
                                    f"({where}; Δ=0: harmonic)"))
            first = [r for r in rows if r["d"] == all_dims[0]]
            console.print(f"{len(first)} potentials, {sum(r['seconds'] for r in first):.0f} s; lambda ranges and "
                          "regions: --markdown or --json", markup=False)
        if save_dir:
            written = save(rows, Path(save_dir), manifold)
            if not as_json:
                console.print("wrote " + ", ".join(map(str, written)), markup=False)
        if plot:
            from earnshaw import plot as _plot

            fig = _plot.harmonicity_map(rows)
            fig.savefig(plot, dpi=120, bbox_inches="tight")
            if not as_json:
                console.print(f"wrote {plot}", markup=False)

"""``earnshaw potential NAME``: Phi and its force profile."""
from __future__ import annotations

import math
from typing import List, Optional

import typer
from rich.table import Table

from earnshaw._cli.common import console, enable_x64, fail


def _parse_params(items: List[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"parameter {item!r} must look like key=value (e.g. d=3)")
        key, value = item.split("=", 1)
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        out[key] = value
    return out


def profile_table(pot, dim: int = 3):
    """Rows ``(x, Phi, force)``: angles for inner-product potentials, distances for radial ones."""
    import jax
    import jax.numpy as jnp

    rows = []
    if pot.kind == "inner":
        for deg in (0, 30, 60, 90, 120, 150, 180):
            t = math.radians(deg)
            u = jnp.zeros(dim).at[0].set(1.0)
            v = jnp.zeros(dim).at[0].set(math.cos(t)).at[1].set(math.sin(t))
            val = float(pot(u, v))
            # force on a unit charge at v from u: -dPhi/d(angle), along the great circle
            dphi = float(jax.grad(lambda a: pot(u, jnp.zeros(dim).at[0].set(jnp.cos(a)).at[1].set(jnp.sin(a))))(t))
            rows.append((f"{deg} deg", val, -dphi))
    else:
        for r in (0.1, 0.25, 0.5, 1.0, 2.0, 4.0):
            val = float(pot.profile(r))
            rows.append((f"r={r}", val, -float(jax.grad(pot.profile)(r))))
    return rows


def realisability(pot, dim: int = 3) -> str:
    """One line: is a radial potential realisable under Gaussian inputs (Theorem 3), and why (not)."""
    import earnshaw as es

    d = pot.d if pot.d is not None else dim
    try:
        rp = es.realize(pot, d=d)
    except es.NotRealizableError as err:
        return f"not realisable: {err}"
    except ValueError as err:
        return f"realisability undecided: {err}"
    return (f"realisable in d={d} (Theorem 3): sigma(x, w) = (2 pi)^(d/4) exp(|x|^2/4) g(|x - w|), "
            f"activation {rp.activation.name!r}; use es.realize(pot, d={d})")


def _valid_names():
    from earnshaw.potentials import POTENTIALS

    return list(POTENTIALS)


def register(app: typer.Typer):
    @app.command()
    def potential(
        name: str = typer.Argument(..., help="activation or radial potential name, one of: "
                                   + ", ".join(_valid_names())),
        param: List[str] = typer.Option([], "--param", "-p", help="parameter key=value, e.g. -p d=3 -p lam=1"),
        plot: Optional[str] = typer.Option(None, "--plot", help="write the profile figure to this PNG"),
        dim: int = typer.Option(3, "--dim", help="dimension of the unit vectors for inner-product potentials (>= 2)"),
    ):
        """Print Phi and its force at a few angles (inner-product) or distances (radial)."""
        enable_x64()
        import earnshaw as es

        try:
            pot = es.potential(name, **_parse_params(param))
        except (ValueError, TypeError) as err:
            fail(str(err))
        if pot.kind == "inner" and dim < 2:
            fail(f"--dim must be >= 2 for an inner-product potential (its profile is over angles in a plane), "
                 f"got {dim}")
        table = Table(title=f"{pot!r}: potential and force", show_lines=False)
        table.add_column("angle" if pot.kind == "inner" else "distance")
        table.add_column("Phi", justify="right")
        table.add_column("force -dPhi/d" + ("angle" if pot.kind == "inner" else "r"), justify="right")
        for x, val, force in profile_table(pot, dim):
            table.add_row(x, f"{val:.10g}", f"{force + 0.0:.6g}")  # + 0.0 prints -0 as 0
        console.print(table)
        if pot.kind == "radial":
            bounded = "bounded" if pot.bounded else "unbounded at r = 0 (not realisable; use the reduced loss)"
            harm = {None: "", 0.0: "; harmonic"}.get(pot.lam, f"; lambda-harmonic with lambda={pot.lam}")
            console.print(f"{pot.name}: {bounded}{harm}")
            console.print(realisability(pot, dim), markup=False)
        if plot:
            from earnshaw import plot as _plot

            fig = _plot.potential_profile(pot, dim=dim)
            fig.savefig(plot, dpi=120)
            console.print(f"wrote {plot}")

"""The table behind ``earnshaw harmonic``: where each named potential is harmonic-like, per dimension.

For every name it calls :func:`earnshaw.harmonicity` on the default grid (docs/math.md section 2) and returns one
row per dimension; :func:`markdown` formats the rows as the tables of docs/reports/harmonic.md.
"""
from __future__ import annotations

import json
import math
import time

import earnshaw.potentials as _pots
from earnshaw.potentials.harmonic import harmonicity

__all__ = ["DEFAULT_NAMES", "RADIAL_PARAMS", "TABLE_DIMS", "SWEEP_DIMS", "check_names", "harmonic_table",
           "markdown", "read_rows"]

#: The named inner-product activations of the registry (parameterised ones with their defaults; the Hermite
#: polynomials ``h_2, h_3, h_4`` of the paper's Appendix F), then the radial potentials.
DEFAULT_NAMES = ("abs", "cos", "elu", "erf", "exp", "gauss", "gelu", "hermite2", "hermite3", "hermite4",
                 "leaky_relu", "linear", "normal_cdf", "quadratic", "relu", "relu2", "selu", "sigmoid",
                 "sigmoid_pm1", "sign", "silu", "sin", "softplus", "step", "tanh",
                 "gaussian", "coulomb", "yukawa", "almost_harmonic")
#: Parameters of the radial potentials in the table (each is built in every dimension).
RADIAL_PARAMS = {"yukawa": {"lam": 1.0}, "almost_harmonic": {"eps": 0.5, "lam": 1.0}}
#: The dimensions of the printed table.
TABLE_DIMS = (2, 3, 5, 10, 20, 50)
#: The dimensions of the full sweep (``earnshaw harmonic --sweep``).
SWEEP_DIMS = tuple(range(2, 51))


def check_names(names):
    """The names, validated: each a name :func:`earnshaw.potential` accepts (``hermiteN`` included).

    >>> check_names(["erf", "hermite3"])
    ('erf', 'hermite3')
    """
    valid = list(_pots.POTENTIALS)
    bad = [n for n in names if n not in valid and not (n.startswith("hermite") and n[7:].isdigit())]
    if bad:
        raise ValueError(f"unknown potential name(s) {', '.join(map(repr, bad))}; valid names: {', '.join(valid)} "
                         "(and hermiteN for the Hermite polynomial of degree N)")
    return tuple(names)


def harmonic_table(names=DEFAULT_NAMES, dims=TABLE_DIMS, *, manifold="euclidean", progress=None):
    """Rows ``{name, d, fraction, fraction_harmonic, lam_min, lam_max, distance_from, angles_held, ...}``.

    Args:
      names: potential names (validated by :func:`check_names`).
      dims: dimensions (``>= 2``).
      manifold: ``"euclidean"`` or ``"sphere"`` (radial potentials are skipped on the sphere).
      progress: called as ``progress(i, name)`` after each name.

    Returns:
      A list of dicts, one per (name, dimension), in the order of ``names`` then ``dims``; each also has
      ``seconds``, the time its name took.

    >>> rows = harmonic_table(["relu"], (3,))
    >>> rows[0]["name"], rows[0]["d"], rows[0]["fraction"]
    ('relu', 3, 1.0)
    """
    names = check_names(names)
    rows = []
    for i, name in enumerate(names):
        if manifold == "sphere" and name in _pots.RADIAL_BUILDERS:
            if progress is not None:
                progress(i, name)
            continue
        t0 = time.perf_counter()
        rep = harmonicity(name, tuple(dims), params=RADIAL_PARAMS.get(name), manifold=manifold)
        seconds = time.perf_counter() - t0
        for row in rep.rows():
            rows.append(dict(name=name, **row, seconds=seconds))
        if progress is not None:
            progress(i, name)
    return rows


def _pct(x):
    return f"{100 * x:.0f}%"


def _num(x):
    if not math.isfinite(x):
        return "—" if math.isnan(x) else "∞"
    return f"{x:.3g}"


def cell(row) -> str:
    """A table cell: the percentage of the grid with ``lam > 0``, or ``Δ=0`` where the potential is harmonic.

    >>> cell(dict(fraction=0.25, fraction_harmonic=0.0)), cell(dict(fraction=0.0, fraction_harmonic=1.0))
    ('25%', 'Δ=0')
    """
    if row["fraction_harmonic"] == 1.0:
        return "Δ=0"
    text = _pct(row["fraction"])
    if row["fraction_harmonic"] > 0:
        text += f" (Δ=0 {_pct(row['fraction_harmonic'])})"
    return text


def markdown(rows, dims=None):
    """Two markdown tables: the share of the grid with ``lam > 0`` per dimension, and the details at the
    smallest and largest dimension (ratio range, region, self-energy threshold).

    >>> print(markdown(harmonic_table(["gaussian"], (2, 3))).splitlines()[2])
    | gaussian | 38% | 33% |
    """
    names = list(dict.fromkeys(r["name"] for r in rows))
    by = {(r["name"], r["d"]): r for r in rows}
    dims = sorted({r["d"] for r in rows}) if dims is None else list(dims)
    lines = ["| potential | " + " | ".join(f"d = {d}" for d in dims) + " |", "|---|" + "---:|" * len(dims)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(cell(by[n, d]) if (n, d) in by else "" for d in dims) + " |")
    lines += ["", "| potential | d | λ > 0 | λ > 0, random direction | λ range where > 0 | angles (all norms) | "
              "\\|u − v\\| ≥ r* | λ_self |", "|---|---:|---:|---:|---|---|---:|---|"]
    for n in names:
        for d in (dims[0], dims[-1]) if len(dims) > 1 else dims:
            r = by.get((n, d))
            if r is None:
                continue
            lam = "—" if math.isnan(r["lam_min"]) else f"{_num(r['lam_min'])} – {_num(r['lam_max'])}"
            selfl = "—" if math.isnan(r["self_lam_min"]) else \
                f"{_num(r['self_lam_min'])} – {_num(r['self_lam_max'])}"
            rand = "—" if math.isnan(r["fraction_random"]) else _pct(r["fraction_random"])
            lines.append(f"| {n} | {d} | {cell(r)} | {rand} | {lam} | {r['angles_held'] or '—'} | "
                         f"{_num(r['distance_from'])} | {selfl} |")
    return "\n".join(lines)


def read_rows(path):
    """The rows of a ``harmonic.json`` written by ``earnshaw harmonic --save``, with JSON's ``null`` read back as
    ``inf`` (``distance_from``: the farthest points fail) or ``nan`` (no point with a positive ratio).

    >>> import json, pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "harmonic.json"
    >>> _ = path.write_text(json.dumps([{"name": "erf", "d": 3, "distance_from": None, "lam_min": None}]))
    >>> read_rows(path)
    [{'name': 'erf', 'd': 3, 'distance_from': inf, 'lam_min': nan}]
    """
    with open(path, encoding="utf-8") as fh:
        rows = json.load(fh)
    return [{k: (math.inf if k == "distance_from" else math.nan) if v is None else v for k, v in r.items()}
            for r in rows]

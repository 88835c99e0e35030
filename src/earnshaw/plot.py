"""Figures: arrays and tables in, matplotlib figures out, no computation of results here."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["potential_profile", "harmonicity_map"]


def potential_profile(pot, *, dim: int = 3, r_max: float = 4.0, n: int = 200):
    """Figure of ``Phi`` and its force: against the angle (inner-product) or distance (radial).

    Args:
      pot: a :class:`~earnshaw.potentials.Potential`, or a
        :class:`~earnshaw.potentials.MixedPotential` (one curve per pair of its activations).
      dim: dimension of the unit vectors for inner-product potentials.

    Returns:
      A matplotlib Figure with two panels.

    >>> import earnshaw as es
    >>> fig = potential_profile(es.potential("erf"))
    >>> len(fig.axes)
    2
    """
    import jax
    import jax.numpy as jnp

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    if pot.kind == "mixed":  # per-unit activations: one curve per pair of activations, on unit vectors
        ts = np.linspace(0.0, math.pi, n)
        for i, (a, b, _, fn) in enumerate(pot.pairs()):
            phi = lambda t, fn=fn: fn(1.0, jnp.cos(t), 1.0)  # noqa: E731
            ax1.plot(ts, np.asarray(jax.vmap(phi)(jnp.asarray(ts))), color=f"C{i}", label=f"{a} x {b}")
            ax2.plot(ts, -np.asarray(jax.vmap(jax.grad(phi))(jnp.asarray(ts))), color=f"C{i}")
        ax1.legend(fontsize=7)
        ax2.axhline(0, color="0.6", lw=0.8)
        xlabel = "angle between unit u and v (rad)"
        ax1.set(xlabel=xlabel, ylabel="Phi", title="cross potentials")
        ax2.set(xlabel=xlabel, ylabel="force  -dPhi/dangle", title="forces")
        fig.tight_layout()
        return fig
    if pot.kind == "inner":
        ts = np.linspace(0.0, math.pi, n)
        u = jnp.zeros(dim).at[0].set(1.0)

        def phi(t):
            return pot(u, jnp.zeros(dim).at[0].set(jnp.cos(t)).at[1].set(jnp.sin(t)))

        vals = np.asarray(jax.vmap(phi)(jnp.asarray(ts)))
        force = -np.asarray(jax.vmap(jax.grad(phi))(jnp.asarray(ts)))
        xlabel = "angle between unit u and v (rad)"
    else:
        ts = np.linspace(r_max / n, r_max, n)
        vals = np.asarray(pot.profile(jnp.asarray(ts)))
        force = -np.asarray(jax.vmap(jax.grad(pot.profile))(jnp.asarray(ts)))
        xlabel = "distance r"
    var = "angle" if pot.kind == "inner" else "r"
    ax1.plot(ts, vals, color="C0")
    ax1.set(xlabel=xlabel, ylabel="Phi", title=f"{pot.name}: potential")
    ax2.plot(ts, force, color="C3")
    ax2.axhline(0, color="0.6", lw=0.8)
    ax2.set(xlabel=xlabel, ylabel=f"force  -dPhi/d{var}", title=f"{pot.name}: force")
    if pot.kind == "radial" and not pot.bounded:
        ax1.set_yscale("symlog")
        ax2.set_yscale("symlog")
    fig.tight_layout()
    return fig


def loss_curves(ts, losses, *, labels=None, max_curves=200, title="loss along the flow"):
    """Loss against time for many runs, on log-log axes.

    Args:
      ts: ``(B, T)`` or ``(T,)`` times. losses: ``(B, T)``.
      labels: optional ``(B,)`` category per run (e.g. the verdict), coloured separately.

    Returns:
      Figure.
    """
    ts, losses = np.atleast_2d(np.asarray(ts)), np.atleast_2d(np.asarray(losses))
    ts = np.broadcast_to(ts, losses.shape)
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = np.asarray(labels) if labels is not None else np.array(["run"] * len(losses))
    cats = list(dict.fromkeys(labels.tolist()))
    for c_i, cat in enumerate(cats):
        idx = np.flatnonzero(labels == cat)[:max_curves]
        for j, i in enumerate(idx):
            ok = ts[i] > 0
            ax.plot(ts[i][ok], np.maximum(losses[i][ok], 1e-30), color=f"C{c_i}", alpha=0.25, lw=0.8,
                    label=f"{cat} ({np.sum(labels == cat)})" if j == 0 else None)
    ax.set(xscale="log", yscale="log", xlabel="time t", ylabel="loss", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def distance_histogram(distances, *, bins=40, title="distance of student units to their teacher units"):
    """Histogram (log-spaced bins) of the per-run maximum distance to the matched teacher unit."""
    x = np.asarray(distances, float).reshape(-1)
    x = x[np.isfinite(x)]
    fig, ax = plt.subplots(figsize=(6, 4))
    lo = max(np.min(x[x > 0]) if np.any(x > 0) else 1e-16, 1e-16)
    ax.hist(np.maximum(x, lo), bins=np.geomspace(lo, max(np.max(x), lo * 10), bins), color="C0")
    ax.set(xscale="log", xlabel="max_i |theta_i - w_match(i)|", ylabel="runs", title=title)
    fig.tight_layout()
    return fig


def trajectories_2d(thetas, w, *, charges=None, b=None, basis=None, mirror=False,
                    title="electrons (paths) and protons"):
    """Paths of electrons projected to a plane, with the protons.

    Args:
      thetas: ``(T, k, d)`` electron positions over time (or ``(R, T, k, d)`` for several runs).
      w: ``(m, d)`` proton positions. charges/b: optional charges for marker sizes.
      basis: ``(d, 2)`` projection; default: the plane of the first two principal axes of the protons
        (the teacher plane), falling back to the paths' PCA.
      mirror: also mark ``-w_j`` (hollow): for odd activations a unit at ``-w_j`` with charge ``-b_j``
        is the same unit.

    Returns:
      Figure.
    """
    th = np.asarray(thetas, float)
    if th.ndim == 3:
        th = th[None]
    w = np.asarray(w, float)
    if basis is None:
        pts = w if w.shape[0] >= 2 else th.reshape(-1, th.shape[-1])
        centred = pts - pts.mean(0)
        _, _, vt = np.linalg.svd(centred if centred.shape[0] >= 2 else th.reshape(-1, th.shape[-1]),
                                 full_matrices=False)
        basis = vt[:2].T if vt.shape[0] >= 2 else np.eye(th.shape[-1])[:, :2]
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for r in range(th.shape[0]):
        for i in range(th.shape[2]):
            p = th[r, :, i] @ basis
            ax.plot(p[:, 0], p[:, 1], color=f"C{i % 10}", alpha=0.6, lw=1)
            ax.plot(p[-1, 0], p[-1, 1], "o", color=f"C{i % 10}", ms=4)
            ax.plot(p[0, 0], p[0, 1], "x", color=f"C{i % 10}", ms=4)
    pw = w @ basis
    ax.scatter(pw[:, 0], pw[:, 1], s=120, marker="+", color="k", linewidths=2.5, label="protons (teacher)", zorder=5)
    if mirror:
        ax.scatter(-pw[:, 0], -pw[:, 1], s=90, marker="o", facecolors="none", edgecolors="k", linewidths=1.2,
                   label="-w (same unit, odd activation)", zorder=5)
    ax.set(title=title, xlabel="projection 1", ylabel="projection 2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def success_heatmap(rows, x, y=None, *, success="success", title="success rate"):
    """Success rate over two sweep axes, as a heat map annotated with rate and number of seeds.

    Args:
      rows: dicts with keys ``x``, ``y`` (unless None) and ``success``: a bool per seed (results rows), or
        a rate per cell (summary rows, weighted by their ``seeds`` entry); rows with equal ``(x, y)`` pool.
      x, y: the axis keys (e.g. ``"teacher.k"``, ``"student.init_scale"``); ``y=None`` gives one row.

    Returns:
      Figure.

    >>> fig = success_heatmap([{"k": 2, "s": 0.5, "success": True}, {"k": 3, "s": 0.5, "success": False}], "k", "s")
    >>> len(fig.axes)
    2
    """
    acc = {}
    for r in rows:
        key = (r[x], r[y] if y is not None else "")
        per_seed = isinstance(r[success], (bool, np.bool_))
        w = 1.0 if per_seed else float(r.get("seeds", 1))
        tot = acc.setdefault(key, [0.0, 0.0])
        tot[0] += w * float(r[success])
        tot[1] += w

    def order(vals):
        vals = list(dict.fromkeys(vals))
        try:
            return sorted(vals)
        except TypeError:
            return vals

    xs, ys = order(k[0] for k in acc), order(k[1] for k in acc)
    rate = np.full((len(ys), len(xs)), np.nan)
    count = np.zeros((len(ys), len(xs)))
    for (vx, vy), (s, n) in acc.items():
        rate[ys.index(vy), xs.index(vx)] = s / n
        count[ys.index(vy), xs.index(vx)] = n
    fig, ax = plt.subplots(figsize=(1.2 * len(xs) + 2.6, 0.9 * len(ys) + 1.9))
    im = ax.imshow(rate, vmin=0.0, vmax=1.0, cmap="viridis", origin="lower", aspect="auto")
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isfinite(rate[i, j]):
                ax.text(j, i, f"{rate[i, j]:.2f}\n(n={int(count[i, j])})", ha="center", va="center", fontsize=8,
                        color="white" if rate[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set(xlabel=x, ylabel=y or "", title=title)
    fig.colorbar(im, ax=ax, label="success rate")
    fig.tight_layout()
    return fig


def harmonicity_map(rows, *, title="share of the grid where the Laplacian has the sign of the potential"):
    """Heat map of ``earnshaw harmonic`` rows: potentials down, dimensions across, colour the share of the grid
    with ``lam = Delta_u Phi / Phi > 0``; harmonic cells (``Delta_u Phi = 0`` on the whole grid) are hatched grey.

    Args:
      rows: dicts with ``name``, ``d``, ``fraction``, ``fraction_harmonic``
        (:func:`earnshaw.experiments.harmonic.harmonic_table`).

    Returns:
      Figure.

    >>> fig = harmonicity_map([{"name": "relu", "d": 2, "fraction": 1.0, "fraction_harmonic": 0.0},
    ...                        {"name": "linear", "d": 2, "fraction": 0.0, "fraction_harmonic": 1.0}])
    >>> len(fig.axes)
    2
    """
    names = list(dict.fromkeys(r["name"] for r in rows))
    dims = sorted({int(r["d"]) for r in rows})
    share = np.full((len(names), len(dims)), np.nan)
    harmonic = np.zeros_like(share, dtype=bool)
    for r in rows:
        i, j = names.index(r["name"]), dims.index(int(r["d"]))
        share[i, j] = r["fraction"]
        harmonic[i, j] = r["fraction_harmonic"] == 1.0
    fig, ax = plt.subplots(figsize=(min(0.16 * len(dims), 9.0) + 3.0, 0.28 * len(names) + 1.6))
    im = ax.imshow(np.where(harmonic, np.nan, share), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto",
                   interpolation="nearest")
    ii, jj = np.nonzero(harmonic)
    for i, j in zip(ii, jj):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="0.8", hatch="///", edgecolor="0.5", lw=0))
    step = max(1, len(dims) // 12)
    ax.set_xticks(range(0, len(dims), step), [str(d) for d in dims[::step]])
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="dimension d", title=title)
    ax.title.set_fontsize(9)
    fig.colorbar(im, ax=ax, label="share with Δu Φ / Φ > 0 (hatched: Δu Φ = 0)")
    fig.tight_layout()
    return fig


def hessian_spectra(eigenvalues, *, labels=None, max_runs=200, title="Hessian spectra at the end points"):
    """Sorted Hessian eigenvalues of many end points (symlog axis), coloured by category.

    Args:
      eigenvalues: ``(B, n)`` ascending spectra (e.g. :attr:`earnshaw.Report.eigenvalues`), or ``(n,)``.
      labels: optional ``(B,)`` category per run (e.g. the verdict).

    Returns:
      Figure.
    """
    eig = np.atleast_2d(np.asarray(eigenvalues, float))
    labels = np.asarray(labels) if labels is not None else np.array(["run"] * len(eig))
    fig, ax = plt.subplots(figsize=(6, 4))
    idx = np.arange(1, eig.shape[1] + 1)
    for c_i, cat in enumerate(dict.fromkeys(labels.tolist())):
        sel = np.flatnonzero(labels == cat)[:max_runs]
        for j, i in enumerate(sel):
            ax.plot(idx, np.sort(eig[i]), "o-", ms=2.5, lw=0.6, alpha=0.35, color=f"C{c_i}",
                    label=f"{cat} ({np.sum(labels == cat)})" if j == 0 else None)
    finite = np.abs(eig[np.isfinite(eig)])
    lin = max(np.quantile(finite, 0.05) if finite.size else 1e-12, 1e-12)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_yscale("symlog", linthresh=lin)
    ax.set(xlabel="eigenvalue index (ascending)", ylabel="eigenvalue", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plane_basis(w, th):
    """``(d, 2)`` orthonormal basis: the teacher plane (protons' principal axes), else the paths' PCA."""
    d = th.shape[-1]
    if d < 2:
        raise ValueError("a plane projection needs d >= 2")
    pts = w if w.shape[0] >= 3 else np.concatenate([w, np.zeros((1, d))])
    _, s, vt = np.linalg.svd(pts - pts.mean(0), full_matrices=False)
    if s.size < 2 or s[1] <= 1e-12 * max(s[0], 1e-300):
        flat = th.reshape(-1, d)
        _, _, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
    return vt[:2].T


def animate_charges(thetas, w, path, *, a=None, b=None, ts=None, basis=None, fps=12, trail=True,
                    title="electrons and protons"):
    """A GIF of the electrons moving among the protons, projected to a plane.

    Args:
      thetas: ``(T, k, d)`` electron positions at the saved times.
      w: ``(m, d)`` proton positions. a, b: optional ``(T, k)`` / ``(m,)`` charges: marker size shows
        ``|charge|``, colour its sign (electron ``i`` carries charge ``-a_i``).
      path: output ``.gif``. ts: optional ``(T,)`` times for the frame titles.
      basis: ``(d, 2)`` projection; default the teacher plane (spanned by the protons; the paths' PCA
        when the protons do not span a plane).

    Returns:
      The path written.
    """
    import pathlib

    from matplotlib.animation import FuncAnimation, PillowWriter

    th = np.asarray(thetas, float)
    w = np.asarray(w, float)
    if th.ndim != 3:
        raise ValueError(f"thetas must have shape (T, k, d), got {th.shape}")
    basis = _plane_basis(w, th) if basis is None else np.asarray(basis, float)
    p = th @ basis
    pw = w @ basis
    n_t, k = p.shape[:2]
    fig, ax = plt.subplots(figsize=(5, 5))
    allp = np.concatenate([p.reshape(-1, 2), pw])
    lo, hi = allp.min(0), allp.max(0)
    pad = 0.1 * np.maximum(hi - lo, 1e-3)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ax.set_aspect("equal", adjustable="box")
    bs = np.ones(len(w)) if b is None else np.asarray(b, float)
    ax.scatter(pw[:, 0], pw[:, 1], s=60 + 120 * np.abs(bs) / max(np.max(np.abs(bs)), 1e-12), marker="+",
               c=["k" if v >= 0 else "C3" for v in bs], linewidths=2.5, zorder=5, label="protons (teacher)")
    lines = [ax.plot([], [], color=f"C{i % 10}", lw=1, alpha=0.6)[0] for i in range(k)] if trail else []
    dots = ax.scatter(p[0, :, 0], p[0, :, 1], s=40, c=[f"C{i % 10}" for i in range(k)], zorder=6,
                      edgecolors="k", label="electrons (student)")
    ax.legend(fontsize=8, loc="upper right")
    ax.set(xlabel="projection 1", ylabel="projection 2")
    av = None if a is None else np.asarray(a, float)

    def frame(t):
        dots.set_offsets(p[t])
        if av is not None:
            q = np.abs(av[t]) / max(np.max(np.abs(av)), 1e-12)
            dots.set_sizes(15 + 80 * q)
        for i, line in enumerate(lines):
            line.set_data(p[: t + 1, i, 0], p[: t + 1, i, 1])
        stamp = f"t = {float(ts[t]):.3g}" if ts is not None else f"frame {t + 1}/{n_t}"
        ax.set_title(f"{title}\n{stamp}", fontsize=10)
        return [dots, *lines]

    anim = FuncAnimation(fig, frame, frames=n_t, blit=False)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.gif")
    anim.save(tmp, writer=PillowWriter(fps=fps))
    plt.close(fig)
    import os

    os.replace(tmp, path)
    return path


__all__ += ["loss_curves", "distance_histogram", "trajectories_2d", "success_heatmap", "hessian_spectra",
            "animate_charges"]

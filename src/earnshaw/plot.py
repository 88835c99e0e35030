"""Figures: arrays and tables in, matplotlib figures out, no computation of results here."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["potential_profile"]


def potential_profile(pot, *, dim: int = 3, r_max: float = 4.0, n: int = 200):
    """Figure of ``Phi`` and its force: against the angle (inner-product) or distance (radial).

    Args:
      pot: a :class:`~earnshaw.potentials.Potential`.
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
    ax1.plot(ts, vals, color="C0")
    ax1.set(xlabel=xlabel, ylabel="Phi", title=f"{pot.name}: potential")
    ax2.plot(ts, force, color="C3")
    ax2.axhline(0, color="0.6", lw=0.8)
    ax2.set(xlabel=xlabel, ylabel="force  -dPhi/dx", title=f"{pot.name}: force")
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


def trajectories_2d(thetas, w, *, charges=None, b=None, basis=None, title="electrons (paths) and protons"):
    """Paths of electrons projected to a plane, with the protons.

    Args:
      thetas: ``(T, k, d)`` electron positions over time (or ``(R, T, k, d)`` for several runs).
      w: ``(m, d)`` proton positions. charges/b: optional charges for marker sizes.
      basis: ``(d, 2)`` projection; default: the plane of the first two principal axes of the protons
        (the teacher plane), falling back to the paths' PCA.

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
    ax.set(title=title, xlabel="projection 1", ylabel="projection 2")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

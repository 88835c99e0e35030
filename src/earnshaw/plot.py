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

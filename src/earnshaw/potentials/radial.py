r"""Translation-invariant radial potentials ``Phi(u, v) = phi(|u - v|)`` as pure functions of ``r``.

==========  =============================================================  =============
name        ``phi(r)``                                                     ``Delta phi``
==========  =============================================================  =============
gaussian    ``exp(-r^2 / (2 ell^2))`` (realisable; ``Phi(0) = 1``)          --
coulomb     ``r^(2-d)`` (d >= 3), ``-log r`` (d = 2), ``-r`` (d = 1)        ``0`` (harmonic)
yukawa      ``(2 pi)^(-d/2) (mu/r)^(d/2-1) K_{d/2-1}(mu r)``, ``mu^2 = lam``  ``lam phi``
==========  =============================================================  =============

Coulomb and Yukawa are the Green's functions of ``-Delta`` and ``lam - Delta``
(docs/math.md section 2); for ``d >= 2`` both are infinite at ``r = 0`` and so are not
realisable (an activation would need ``E[sigma^2] = Phi(0) = inf``). Use them with
the reduced loss (paper eq. 2), which drops the self-interaction.
"""
from __future__ import annotations

import math

import jax.numpy as jnp

from earnshaw.potentials._bessel import kv

__all__ = ["gaussian", "coulomb", "yukawa", "yukawa_value_at_zero"]


def gaussian(r, *, ell: float = 1.0):
    """Gaussian RBF ``exp(-r^2 / (2 ell^2))``; ``r`` any shape."""
    return jnp.exp(-(r * r) / (2.0 * ell * ell))


def coulomb(r, *, d: int):
    """Harmonic (Coulomb) potential in ``d`` dimensions; ``r > 0`` any shape."""
    if d >= 3:
        return r ** (2.0 - d)
    if d == 2:
        return -jnp.log(r)
    return -r


def yukawa(r, *, d: int, lam: float = 1.0):
    """lambda-harmonic Yukawa/Bessel kernel ``G_{d, lam}`` (``(lam - Delta) G = delta``); ``r > 0``."""
    mu = math.sqrt(lam)
    if d == 1:
        return jnp.exp(-mu * r) / (2.0 * mu)
    if d == 3:
        return jnp.exp(-mu * r) / (4.0 * jnp.pi * r)
    nu = d / 2.0 - 1.0
    return (2.0 * jnp.pi) ** (-d / 2.0) * (mu / r) ** nu * kv(nu, mu * r)


def yukawa_value_at_zero(d: int, lam: float) -> float:
    """``G_{d, lam}(0)``: finite only in ``d = 1``."""
    return 1.0 / (2.0 * math.sqrt(lam)) if d == 1 else math.inf

r"""Closed-form potentials of the parameterised activations: ABReLU, GELU, monomials and polynomials.

Like :mod:`earnshaw.potentials.inner`, every function takes the Gram triple ``(p, c, q) = (|u|^2, u.v, |v|^2)``
(broadcastable arrays) and returns ``Phi = E[s(U) s(V)]`` for ``(U, V)`` centred normal with covariance
``[[p, c], [c, q]]``. Derivations are in docs/math.md section 1c:

=============  =================================================================================
abrelu a, b    ``(a^2 + b^2) Phi_relu(u, v) - 2 a b Phi_relu(u, -v)``  (``s = b relu(z) - a relu(-z)``)
gelu           ``c N + G (p q - c^2 + c^2 / (1 + p) + c^2 / (1 + q))`` with ``N = Phi_normal_cdf``,
               ``G = E[phi(U) phi(V)] = ((1 + p)(1 + q) - c^2)^(-1/2) / (2 pi)``
polynomial     ``sum_k k! c^k A_k(p) A_k(q)``, ``A_k(p) = sum_{i >= k, i - k even} a_i C(i, k) (i-k-1)!! p^((i-k)/2)``
               (``s = sum_i a_i z^i``; a monomial is one ``a_i = 1``)
=============  =================================================================================

The polynomial row is Isserlis' theorem grouped by the number ``k`` of ``U``-``V`` pairings; in the Hermite
basis it is the Hermite row of :mod:`inner` summed over degrees, and on unit vectors it is ``sum_n c_n^2 rho^n``
with ``c_n`` the polynomial's Hermite coefficients.
"""
from __future__ import annotations

import functools
import math

import jax.numpy as jnp

from earnshaw.potentials import inner

__all__ = ["abrelu", "gelu", "polynomial", "CLOSED_FORMS", "FAMILIES"]


def abrelu(a, b, p, c, q):
    plus, minus = inner._relu_pair(p, c, q)
    return (a * a + b * b) * plus - 2.0 * a * b * minus


def gelu(p, c, q):
    g = inner.gauss(p, c, q) / (2.0 * math.pi)
    cc = c * c
    return c * inner.normal_cdf(p, c, q) + g * (p * q - cc + cc / (1.0 + p) + cc / (1.0 + q))


def _double_factorial_odd(m):
    """``(m - 1)!!`` for even ``m >= 0``: ``E[Z^m]``."""
    return math.prod(range(m - 1, 0, -2)) if m > 0 else 1


@functools.lru_cache(maxsize=None)
def _pairing_rows(coeffs):
    """``rows[k][j]``: coefficient of ``p^j`` in ``A_k(p)``, exact in integers/floats."""
    n = len(coeffs) - 1
    rows = []
    for k in range(n + 1):
        row = [0.0] * (n // 2 + 1)
        for i in range(k, n + 1, 2):
            row[(i - k) // 2] += coeffs[i] * math.comb(i, k) * _double_factorial_odd(i - k)
        rows.append(tuple(row))
    return tuple(rows)


def _horner(row, x):
    out = jnp.zeros_like(x) + row[-1]
    for a in row[-2::-1]:
        out = out * x + a
    return out


def polynomial(coeffs, p, c, q):
    out = jnp.zeros_like(p * c * q)
    for k, row in enumerate(_pairing_rows(tuple(coeffs))):
        if any(row):
            out = out + math.factorial(k) * c**k * _horner(row, p) * _horner(row, q)
    return out


def _monomial(n):
    return functools.partial(polynomial, (0.0,) * n + (1.0,))


#: Closed forms of parameter-free activations defined here (the rest are in :data:`inner.CLOSED_FORMS`).
CLOSED_FORMS = {"gelu": gelu}

#: Builders of closed-form potentials by parameterised activation name: ``FAMILIES[name](**params) -> fn``.
FAMILIES = {
    "leaky_relu": lambda slope: functools.partial(inner.leaky_relu, slope),
    "abrelu": lambda a, b: functools.partial(abrelu, a, b),
    "hermite": lambda m: functools.partial(inner.hermite, m),
    "monomial": _monomial,
    "polynomial": lambda coeffs: functools.partial(polynomial, tuple(coeffs)),
}

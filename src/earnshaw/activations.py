"""Activations ``s(z)`` by name, for inner-product units ``sigma(x, w) = s(w . x)``.

Every activation is an :class:`Activation`: a named, jax-traceable scalar map
``s: R -> R`` applied elementwise, plus the facts the rest of earnshaw needs
(is it odd, is there a closed-form potential). Build one by name with
:func:`activation` or wrap any jax-traceable callable with :func:`custom`.

>>> import jax.numpy as jnp
>>> from earnshaw.activations import activation
>>> float(activation("sigmoid_pm1")(jnp.asarray(0.0)))
0.0
>>> activation("hermite", m=3).name
'hermite3'
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import erf as _erf

__all__ = ["Activation", "activation", "custom", "ACTIVATIONS", "hermite_poly"]


@dataclasses.dataclass(frozen=True, eq=False)
class Activation:
    """A scalar activation ``s``, applied elementwise.

    Attributes:
      name: registry name (``"erf"``, ``"hermite3"``, ...) or the custom name.
      fn: jax-traceable ``s(z)``; any shape in, same shape out.
      odd: ``s(-z) = -s(z)``. Then a unit ``(a, theta)`` equals ``(-a, -theta)``,
        which matching to teacher units must respect.
      smooth: ``s`` is analytic, so Gauss-Hermite quadrature converges fast.
      params: the keyword parameters it was built with.
      kind: ``"inner"`` for ``sigma(x, w) = fn(w . x)`` (``fn`` scalar, elementwise),
        ``"translation"`` for ``sigma(x, w) = fn(x, w)`` with ``x`` ``(..., d)`` and
        ``w`` ``(..., d)`` broadcasting to ``(...)`` (the activations of Theorem 3).

    Identity is equality: :func:`activation` caches, so the same name and
    parameters give the same object, and jit does not retrace.

    >>> import jax.numpy as jnp, earnshaw as es
    >>> act = es.activation("erf")
    >>> act is es.activation("erf"), act.odd, [round(v, 4) for v in act.fn(jnp.array([-1.0, 0.0, 1.0])).tolist()]
    (True, True, [-0.8427, 0.0, 0.8427])
    """

    name: str
    fn: Callable[[jax.Array], jax.Array]
    odd: bool = False
    smooth: bool = True
    params: tuple = ()
    kind: str = "inner"

    def __call__(self, *args):
        return self.fn(*args)

    def units(self, x, w):
        """Unit outputs ``sigma(x_n, w_i)``.

        Args:
          x: inputs ``(..., n, d)``.
          w: unit weights ``(..., k, d)``.

        Returns:
          ``(..., n, k)`` array.
        """
        if self.kind == "inner":
            return self.fn(jnp.einsum("...nd,...kd->...nk", x, w))
        return self.fn(x[..., :, None, :], w[..., None, :, :])

    def __repr__(self):
        return f"Activation({self.name!r})"


def hermite_poly(m: int, z):
    """Normalised probabilists' Hermite polynomial ``h_m(z) = He_m(z) / sqrt(m!)``.

    ``E[h_m(Z) h_n(Z)] = delta_mn`` for ``Z ~ N(0, 1)``. Any shape of ``z``.

    >>> round(float(hermite_poly(2, 1.0)), 12)   # (1 - 1) / sqrt(2)
    0.0
    """
    z = jnp.asarray(z)
    h_prev, h = jnp.ones_like(z), z
    if m == 0:
        return h_prev
    for n in range(1, m):  # He_{n+1} = z He_n - n He_{n-1}; m is static and small
        h_prev, h = h, z * h - n * h_prev
    return h / math.sqrt(math.factorial(m))


def _sign(z):
    return jnp.sign(z)


def _step(z):
    return (z > 0).astype(jnp.result_type(z, float))


def _normal_cdf(z):
    return 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))


def _leaky_relu(slope, z):
    return jnp.where(z > 0, z, slope * z)


_FIXED = {
    "erf": dict(fn=_erf, odd=True),
    "relu": dict(fn=jax.nn.relu, smooth=False),
    "step": dict(fn=_step, smooth=False),
    "sign": dict(fn=_sign, odd=True, smooth=False),
    "tanh": dict(fn=jnp.tanh, odd=True),
    "sigmoid_pm1": dict(fn=lambda z: 2.0 * jax.nn.sigmoid(z) - 1.0, odd=True),
    "linear": dict(fn=lambda z: z, odd=True),
    "quadratic": dict(fn=lambda z: z * z),
    "abs": dict(fn=jnp.abs, smooth=False),
    "relu2": dict(fn=lambda z: jax.nn.relu(z) ** 2, smooth=False),
    "normal_cdf": dict(fn=_normal_cdf),
    "sin": dict(fn=jnp.sin, odd=True),
    "cos": dict(fn=jnp.cos),
    "gauss": dict(fn=lambda z: jnp.exp(-0.5 * z * z)),
    "exp": dict(fn=jnp.exp),
}

#: Names accepted by :func:`activation`. ``hermite`` needs ``m``; ``leaky_relu`` takes ``slope`` (default 0.01).
ACTIVATIONS = tuple(sorted([*_FIXED, "hermite", "leaky_relu"]))


@functools.lru_cache(maxsize=None)
def activation(name: str, **params) -> Activation:
    """The activation called ``name``.

    Args:
      name: one of :data:`ACTIVATIONS`. ``"hermite"`` takes ``m`` (degree,
        ``m >= 0``): ``s = h_m``. ``"hermite3"`` is shorthand for ``m=3``. ``"leaky_relu"`` takes
        ``slope`` (``s(z) = z`` for ``z > 0``, ``slope z`` else; default 0.01). ``"relu2"`` is ``relu(z)^2``
        (arc-cosine kernel of order 2), ``"gauss"`` is ``exp(-z^2 / 2)``, ``"normal_cdf"`` the standard
        normal CDF.
      **params: keyword parameters of the named activation.

    Returns:
      The cached :class:`Activation`.

    Raises:
      ValueError: unknown name (the message lists the valid ones) or bad params.

    >>> activation("relu").odd
    False
    """
    if isinstance(name, Activation):
        return name
    if name.startswith("hermite") and name != "hermite":
        suffix = name[len("hermite"):]
        if suffix.isdigit():
            return activation("hermite", m=int(suffix), **params)
    if name == "hermite":
        m = params.pop("m", None)
        if params:
            raise ValueError(f"hermite takes only m, got {sorted(params)}")
        if not isinstance(m, int) or isinstance(m, bool) or m < 0:
            raise ValueError(f"hermite needs an integer degree m >= 0, got m={m!r}")
        return Activation(f"hermite{m}", functools.partial(hermite_poly, m), odd=m % 2 == 1,
                          params=(("m", m),))
    if name == "leaky_relu":
        slope = params.pop("slope", 0.01)
        if params:
            raise ValueError(f"leaky_relu takes only slope, got {sorted(params)}")
        if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not math.isfinite(slope):
            raise ValueError(f"leaky_relu needs a finite number slope, got slope={slope!r}")
        slope = float(slope)
        return Activation("leaky_relu", functools.partial(_leaky_relu, slope), odd=slope == 1.0,
                          smooth=False, params=(("slope", slope),))
    if name not in _FIXED:
        raise ValueError(f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}")
    if params:
        raise ValueError(f"activation {name!r} takes no parameters, got {sorted(params)}")
    return Activation(name, **_FIXED[name])


def custom(fn: Callable, name: str = "custom", *, odd: bool = False, smooth: bool = True) -> Activation:
    """Wrap any jax-traceable scalar function as an :class:`Activation`.

    Its potential is computed by Gauss-Hermite quadrature, accurate when ``fn``
    is smooth (analytic); non-smooth ``fn`` converges slowly (set ``smooth=False``
    to get a warning when its potential is built).

    >>> import jax.numpy as jnp
    >>> softsign = custom(lambda z: z / (1 + jnp.abs(z)), "softsign", odd=True, smooth=False)
    >>> softsign.name
    'softsign'
    """
    if not callable(fn):
        raise TypeError(f"custom activation needs a callable, got {type(fn).__name__}")
    return Activation(name, fn, odd=odd, smooth=smooth)

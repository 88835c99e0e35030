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

__all__ = ["Activation", "activation", "custom", "ACTIVATIONS", "ALIASES", "hermite_poly"]


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


def _gelu(z):
    return z * _normal_cdf(z)


# SELU's constants (Klambauer et al. 2017), to double precision
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _elu(alpha, z):
    # expm1 on the clamped argument: the unused branch of where must not overflow (and NaN the gradient)
    return jnp.where(z > 0, z, alpha * jnp.expm1(jnp.minimum(z, 0.0)))


def _selu(z):
    return _SELU_SCALE * _elu(_SELU_ALPHA, z)


def _abrelu(a, b, z):
    return jnp.where(z > 0, b * z, a * z)


def _polynomial(coeffs, z):
    out = jnp.zeros_like(z) + coeffs[-1]
    for c in coeffs[-2::-1]:  # Horner; coeffs[i] multiplies z**i
        out = out * z + c
    return out


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
    "gelu": dict(fn=_gelu),
    "softplus": dict(fn=jax.nn.softplus),
    "silu": dict(fn=jax.nn.silu),
    "sigmoid": dict(fn=jax.nn.sigmoid),
    "selu": dict(fn=_selu, smooth=False),
}

#: Other names for the same activation (the arc-cosine kernels of orders 0, 1, 2 and SiLU's other name).
ALIASES = {"arccos0": "step", "arccos1": "relu", "arccos2": "relu2", "swish": "silu"}


def _number(name, key, value, *, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (positive and value <= 0):
        kind = "positive" if positive else "finite"
        raise ValueError(f"{name} needs a {kind} number {key}, got {key}={value!r}")
    return float(value)


def _take(name, params, defaults):
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"{name} takes only {', '.join(defaults)}, got {unknown}")
    return {k: params.get(k, v) for k, v in defaults.items()}


def _build_leaky_relu(params):
    slope = _number("leaky_relu", "slope", _take("leaky_relu", params, {"slope": 0.01})["slope"])
    return Activation("leaky_relu", functools.partial(_leaky_relu, slope), odd=slope == 1.0,
                      smooth=False, params=(("slope", slope),))


def _build_abrelu(params):
    p = _take("abrelu", params, {"a": 0.0, "b": 1.0})
    a, b = _number("abrelu", "a", p["a"]), _number("abrelu", "b", p["b"])
    return Activation("abrelu", functools.partial(_abrelu, a, b), odd=a == b, smooth=a == b,
                      params=(("a", a), ("b", b)))


def _build_elu(params):
    alpha = _number("elu", "alpha", _take("elu", params, {"alpha": 1.0})["alpha"])
    return Activation("elu", functools.partial(_elu, alpha), smooth=False, params=(("alpha", alpha),))


def _build_hermite(params):
    m = _take("hermite", params, {"m": None})["m"]
    if not isinstance(m, int) or isinstance(m, bool) or m < 0:
        raise ValueError(f"hermite needs an integer degree m >= 0, got m={m!r}")
    return Activation(f"hermite{m}", functools.partial(hermite_poly, m), odd=m % 2 == 1, params=(("m", m),))


def _build_monomial(params):
    n = _take("monomial", params, {"n": None})["n"]
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 40:
        raise ValueError(f"monomial needs an integer power n in [0, 40], got n={n!r}")
    return Activation("monomial", functools.partial(_polynomial, (0.0,) * n + (1.0,)), odd=n % 2 == 1,
                      params=(("n", n),))


def _build_polynomial(params):
    coeffs = _take("polynomial", params, {"coeffs": None})["coeffs"]
    if isinstance(coeffs, (str, bytes)) or not hasattr(coeffs, "__len__") or not 1 <= len(coeffs) <= 41:
        raise ValueError("polynomial needs coeffs, a sequence of 1 to 41 numbers (coeffs[i] multiplies z**i), "
                         f"got coeffs={coeffs!r}")
    coeffs = tuple(_number("polynomial", f"coeffs[{i}]", c) for i, c in enumerate(coeffs))
    odd = all(c == 0.0 for c in coeffs[0::2])
    return Activation("polynomial", functools.partial(_polynomial, coeffs), odd=odd, params=(("coeffs", coeffs),))


# activations with keyword parameters: name -> builder(params dict)
_PARAMETRIC = {"leaky_relu": _build_leaky_relu, "abrelu": _build_abrelu, "elu": _build_elu,
               "hermite": _build_hermite, "monomial": _build_monomial, "polynomial": _build_polynomial}

#: Names accepted by :func:`activation` (aliases included). ``hermite`` needs ``m``, ``monomial`` ``n``,
#: ``polynomial`` ``coeffs``; ``leaky_relu`` takes ``slope`` (default 0.01), ``abrelu`` ``a``, ``b`` (0, 1),
#: ``elu`` ``alpha`` (1).
ACTIVATIONS = tuple(sorted([*_FIXED, *_PARAMETRIC, *ALIASES]))


def activation(name: str, **params) -> Activation:
    """The activation called ``name``.

    Args:
      name: one of :data:`ACTIVATIONS`. ``"hermite"`` takes ``m`` (degree,
        ``m >= 0``): ``s = h_m``. ``"hermite3"`` is shorthand for ``m=3``. ``"leaky_relu"`` takes
        ``slope`` (``s(z) = z`` for ``z > 0``, ``slope z`` else; default 0.01). ``"relu2"`` is ``relu(z)^2``
        (arc-cosine kernel of order 2), ``"gauss"`` is ``exp(-z^2 / 2)``, ``"normal_cdf"`` the standard
        normal CDF. ``"abrelu"`` is ``a z`` for ``z < 0`` and ``b z`` else (``a``, ``b``; leaky ReLU is
        ``a = slope, b = 1``). ``"gelu"`` is ``z Phi(z)`` (exact, erf-based), ``"silu"`` (``"swish"``)
        ``z sigmoid(z)``, ``"sigmoid"`` the logistic ``1 / (1 + e^-z)``, ``"elu"`` ``z`` or
        ``alpha (e^z - 1)``, ``"selu"`` the self-normalising ELU. ``"monomial"`` is ``z^n`` (``n``);
        ``"polynomial"`` is ``sum_i coeffs[i] z^i``. ``"arccos0/1/2"`` name ``step``, ``relu``, ``relu2``.
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
    # lists (polynomial coefficients from a TOML config) become tuples so the cache can key on them
    return _activation(name, **{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


_INTERNED = {}


@functools.lru_cache(maxsize=None)
def _activation(name, **params):
    act = _build(name, **params)
    # one object per (name, parameters), however they were spelled (defaults given or not, aliases)
    return _INTERNED.setdefault((act.name, act.params), act)


def _build(name, **params):
    name = ALIASES.get(name, name)
    if name.startswith("hermite") and name != "hermite":
        suffix = name[len("hermite"):]
        if suffix.isdigit():
            return _activation("hermite", m=int(suffix), **params)
    if name in _PARAMETRIC:
        return _PARAMETRIC[name](params)
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

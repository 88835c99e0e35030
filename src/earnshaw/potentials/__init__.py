"""Potentials ``Phi(u, v) = E_X[sigma(X, u) sigma(X, v)]`` under ``X ~ N(0, I_d)``.

:func:`potential` builds one by name: any activation name from
:mod:`earnshaw.activations` (closed form where one exists; the certified Hermite
tables of :mod:`earnshaw.potentials.fast` for the named smooth ones without; a
half-range rule for ELU/SELU), a custom :class:`~earnshaw.activations.Activation`
(Gauss-Hermite quadrature unless it has a closed form), or a radial potential
(``gaussian``, ``coulomb``, ``yukawa``, ``almost_harmonic``).
"""
from __future__ import annotations

import functools
import inspect
import math
import warnings

from earnshaw import activations as _act
from earnshaw.potentials import families, fast, inner, piecewise, radial
from earnshaw.potentials._potential import Potential
from earnshaw.potentials.mixed import MixedPotential, mixed_potential

__all__ = ["Potential", "MixedPotential", "potential", "mixed_potential", "POTENTIALS", "RADIAL_BUILDERS",
           "DEFAULT_GH_ORDER", "METHODS", "METHOD_OPTIONS", "closed_form"]

#: Gauss-Hermite order for activations without a closed form: error < 1e-10 against
#: the erf closed form for |u|, |v| <= 1.5; tanh at |u|, |v| ~ 2: 2e-9 (Phi), 3e-7 (gradient).
#: Raise ``order`` (<= 300) for larger norms.
DEFAULT_GH_ORDER = 128


def _check_d(name, d, minimum=1):
    if d is None:
        raise ValueError(f"potential {name!r} needs the dimension d (an integer >= {minimum}), e.g. "
                         f"es.potential({name!r}, d=3) or `earnshaw potential {name} -p d=3`")
    if isinstance(d, bool) or not isinstance(d, int) or d < minimum:
        raise ValueError(f"potential {name!r}: d must be an integer >= {minimum}, got d={d!r}")


def _check_positive(name, key, value):
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and math.isfinite(value)):
        raise ValueError(f"potential {name!r}: {key} must be a positive number, got {key}={value!r}")


def _gaussian(*, ell=1.0, d=None):
    _check_positive("gaussian", "ell", ell)
    if d is not None:
        _check_d("gaussian", d)
    return Potential("gaussian", "radial", functools.partial(radial.gaussian, ell=float(ell)),
                     params=(("ell", ell),) + ((("d", d),) if d else ()), d=d, value_at_zero=1.0)


def _coulomb(*, d=None):
    _check_d("coulomb", d)
    return Potential("coulomb", "radial", functools.partial(radial.coulomb, d=d), params=(("d", d),), d=d,
                     value_at_zero=math.inf if d >= 2 else 0.0, lam=0.0)


def _yukawa(*, d=None, lam=1.0):
    _check_d("yukawa", d)
    _check_positive("yukawa", "lam", lam)
    return Potential("yukawa", "radial", functools.partial(radial.yukawa, d=d, lam=float(lam)),
                     params=(("d", d), ("lam", lam)), d=d,
                     value_at_zero=radial.yukawa_value_at_zero(d, lam), lam=float(lam))


def _almost_harmonic(*, d=None, eps=None, lam=1.0, variant="ball"):
    # imported here: almost_harmonic builds on this module's Potential and registry (an import cycle otherwise)
    from earnshaw.potentials.almost_harmonic import almost_harmonic_potential

    return almost_harmonic_potential(d=d, eps=eps, lam=lam, variant=variant)


#: Builders of radial potentials by name; other modules register theirs here.
RADIAL_BUILDERS = {"gaussian": _gaussian, "coulomb": _coulomb, "yukawa": _yukawa,
                   "almost_harmonic": _almost_harmonic}


def _names():
    return tuple(sorted([*_act.ACTIVATIONS, *RADIAL_BUILDERS]))


class _Names:
    def __iter__(self):
        return iter(_names())

    def __contains__(self, x):
        return x in _names()

    def __repr__(self):
        return repr(_names())


#: Every name :func:`potential` accepts.
POTENTIALS = _Names()


#: How an activation's potential is computed: ``closed`` form, ``fast`` (Hermite series with tabulated norm
#: coefficients, :mod:`earnshaw.potentials.fast`), ``quadrature`` (2-D Gauss-Hermite), ``piecewise`` (1-D quadrature
#: with a closed-form inner integral, for ELU/SELU).
METHODS = ("closed", "fast", "quadrature", "piecewise")
#: Options of the numerical methods, as accepted by :func:`potential` and a config's ``[potential_options]``.
METHOD_OPTIONS = ("method", "order", "tol", "terms", "radius")


def _base_name(act):
    return "hermite" if act.name.startswith("hermite") and act.params else act.name


def _is_registry(act):
    try:
        return act is _act.activation(_base_name(act), **dict(act.params))
    except ValueError:
        return False


def closed_form(act: _act.Activation):
    """The closed-form ``fn(nu, c, nv)`` of a registry activation, or ``None`` (custom ones have none).

    >>> import earnshaw as es
    >>> from earnshaw.potentials import closed_form
    >>> closed_form(es.activation("gelu")) is not None, closed_form(es.activation("tanh"))
    (True, None)
    """
    base = _base_name(act)
    if not _is_registry(act):
        return None
    if base in inner.CLOSED_FORMS:
        return inner.CLOSED_FORMS[base]
    if base in families.CLOSED_FORMS:
        return families.CLOSED_FORMS[base]
    if base in families.FAMILIES:
        return families.FAMILIES[base](**dict(act.params))
    return None


def _default_method(act):
    if closed_form(act) is not None:
        return "closed"
    if _base_name(act) in piecewise.PIECEWISE and _is_registry(act):
        return "piecewise"
    # the named smooth activations without a closed form (tanh, sigmoid_pm1, softplus, silu/swish, sigmoid) take
    # the certified Hermite tables: 1e-12 where quadrature of order 128 leaves 1e-7 or worse, at a few times
    # erf's cost where quadrature costs thousands of times it (docs/math.md section 1d). Their tables are kept
    # on disk, so a process pays milliseconds, not seconds, to load one. A custom activation keeps quadrature:
    # its table would be built in every process and may not certify parallel units (a rough function)
    if act.smooth and _is_registry(act):
        return "fast"
    return "quadrature"


def _inner_potential(act: _act.Activation, opts):
    if act.kind != "inner":
        raise ValueError(f"{act!r} is not an inner-product activation; build its potential with realize()")
    opts = dict(opts)
    unknown = sorted(set(opts) - set(METHOD_OPTIONS))
    if unknown:
        raise ValueError(f"potential {act.name!r}: unknown option(s) {unknown}; valid: {', '.join(METHOD_OPTIONS)}")
    method = opts.pop("method", None)
    if method is None:
        method = "quadrature" if "order" in opts and not {"tol", "terms", "radius"} & set(opts) else \
            ("fast" if {"tol", "terms", "radius"} & set(opts) else _default_method(act))
    if method not in METHODS:
        raise ValueError(f"potential {act.name!r}: unknown method {method!r}; valid: {', '.join(METHODS)}")
    allowed = {"closed": (), "quadrature": ("order",), "piecewise": ("order",),
               "fast": ("order", "tol", "terms", "radius")}[method]
    extra = sorted(set(opts) - set(allowed))
    if extra:
        raise ValueError(f"potential {act.name!r}: method={method!r} takes {', '.join(allowed) or 'no options'}, "
                         f"got {extra}")
    smooth = act.smooth or act.name in ("relu", "abs", "relu2", "abrelu", "leaky_relu", "step", "sign")
    if method == "closed":
        fn = closed_form(act)
        if fn is None:
            with_closed = sorted({*inner.CLOSED_FORMS, *families.CLOSED_FORMS, *families.FAMILIES})
            raise ValueError(f"activation {act.name!r} has no closed-form potential; closed forms exist for "
                             f"{', '.join(with_closed)}; use method='fast' or 'quadrature'")
        return Potential(act.name, "inner", fn, params=act.params, activation=act, smooth=smooth)
    if method == "piecewise":
        if _base_name(act) not in piecewise.PIECEWISE:
            raise ValueError(f"method='piecewise' is for {', '.join(piecewise.PIECEWISE)}, not {act.name!r}")
        order = int(opts.get("order", piecewise.DEFAULT_ORDER))
        fn = piecewise.PIECEWISE[_base_name(act)](order=order, **dict(act.params))
        return Potential(act.name, "inner", fn, params=act.params + (("method", method), ("order", order)),
                         activation=act, smooth=True)
    if method == "fast":
        radius = opts.get("radius")
        table = fast.build_table(act.fn, odd=True if act.odd else None, tol=float(opts.get("tol", 1e-12)),
                                 terms=opts.get("terms"), radius=None if radius is None else float(radius),
                                 order=int(opts.get("order", DEFAULT_GH_ORDER)),
                                 cache_key=repr((act.name, act.params)) if _is_registry(act) else None)
        fn = functools.partial(fast.fast_potential_fn, act.fn, table)
        # the fallback's order too: biased units of this potential take quadrature of that order
        params = act.params + (("method", method), ("tol", float(opts.get("tol", 1e-12))), ("terms", table.terms),
                               ("radius", table.radius), ("order", table.order))
        return Potential(act.name, "inner", fn, params=params, activation=act, smooth=act.smooth,
                         grams_fn=functools.partial(fast.fast_grams, act.fn, table),
                         partials_fn=functools.partial(fast.fast_gram_partials, act.fn, table))
    if not act.smooth:
        warnings.warn(f"{act!r} is not smooth: Gauss-Hermite quadrature of its potential converges slowly "
                      "and its derivatives (Price's theorem) miss the kinks", stacklevel=4)
    order = DEFAULT_GH_ORDER if opts.get("order") is None else int(opts["order"])
    inner.gauss_hermite_nodes(order)  # validates the order early
    fn = functools.partial(inner.gauss_hermite, act.fn, act.fn, order)
    return Potential(act.name, "inner", fn, params=act.params + (("order", order),), activation=act,
                     smooth=act.smooth)


@functools.lru_cache(maxsize=None)
def _cached(name, items):
    params = dict(items)
    if name in RADIAL_BUILDERS:
        builder = RADIAL_BUILDERS[name]
        valid = [p for p in inspect.signature(builder).parameters]
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"potential {name!r} has no parameter {', '.join(unknown)}; valid: {', '.join(valid)}")
        return builder(**params)
    opts = {k: params.pop(k) for k in METHOD_OPTIONS if k in params}
    try:
        act = _act.activation(name, **params)
    except ValueError as err:
        if str(err).startswith("unknown activation"):
            raise ValueError(f"unknown potential {name!r}; valid names: {', '.join(_names())}") from None
        raise
    return _inner_potential(act, tuple(sorted(opts.items())))


def potential(name, **params) -> Potential:
    """The potential of an activation, or a radial potential, by name.

    Args:
      name: an activation name (``"erf"``, ``"relu"``, ``"tanh"``, ``"hermite"``
        with ``m=``, ...), an :class:`~earnshaw.activations.Activation`, or a
        radial potential (``"gaussian"`` with ``ell``; ``"coulomb"`` with ``d``;
        ``"yukawa"`` with ``d``, ``lam``; ``"almost_harmonic"`` with ``d``,
        ``eps``, ``lam``, ``variant``). A list of activations, one per unit, gives
        per-unit activations for student and teacher alike (:func:`mixed_potential`,
        whose keyword ``order`` it takes).
      **params: the potential's parameters. For activations without a closed
        form: ``method=`` (``"fast"``, the default for the named smooth ones:
        tanh, sigmoid_pm1, softplus, silu/swish, sigmoid; ``"quadrature"``, the
        default for custom ones), ``order=`` (the Gauss-Hermite order; given
        alone it asks for quadrature), ``tol=``, ``terms=``, ``radius=`` (the
        fast tables, :func:`earnshaw.potentials.fast.build_table`).

    Returns:
      A cached :class:`Potential`.

    Raises:
      ValueError: unknown name (listing valid ones) or invalid parameters.

    >>> import jax.numpy as jnp, earnshaw as es
    >>> pot = es.potential("erf")
    >>> round(float(pot(jnp.array([1.0, 0.5, -0.3]), jnp.array([0.2, -0.7, 0.9]))), 6)  # float32 by default
    -0.146608
    >>> es.potential("yukawa", d=3, lam=1.0).lam
    1.0
    >>> dict(es.potential("tanh", order=64).params)  # order= alone: quadrature; es.potential("tanh"): the tables
    {'order': 64}
    """
    if isinstance(name, (Potential, MixedPotential)):
        return name
    if isinstance(name, (list, tuple)):
        if set(params) - {"order"}:
            raise ValueError(f"a list of activations (one per unit) takes only order= (the mixed pairs' quadrature), "
                             f"got {sorted(params)}; give per-unit options as potentials, e.g. "
                             "es.potential('tanh', order=64), in the list")
        return mixed_potential(name, **params)
    if isinstance(name, _act.Activation):
        return _cached_activation(name, tuple(sorted(params.items())))
    if not isinstance(name, str):
        raise TypeError(f"potential() takes a name, an Activation or a list of them (one per unit), got "
                        f"{type(name).__name__}")
    if name.lower() != name:
        name = name.lower()
    name = _act.ALIASES.get(name, name)
    if name not in _names() and not (name.startswith("hermite") and name[7:].isdigit()):
        raise ValueError(f"unknown potential {name!r}; valid names: {', '.join(_names())}")
    return _cached(name, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())))


@functools.lru_cache(maxsize=None)
def _cached_activation(act, opts):
    return _inner_potential(act, opts)

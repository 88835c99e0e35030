"""The :class:`Potential` record: ``Phi(u, v)`` and its lift to Gram matrices.

A potential is an immutable record around one pure function: of the Gram triple
``(|u|^2, u.v, |v|^2)`` for inner-product activations (``kind="inner"``), or of the
distance ``r = |u - v|`` for translation-invariant radial ones (``kind="radial"``).
``__call__`` evaluates pairs with broadcasting over leading axes; :meth:`gram` lifts
it to matrices, like JAX MD's ``smap.pair`` lifts a pair energy to a system.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from earnshaw.activations import Activation
from earnshaw.potentials._safe import safe_norm

__all__ = ["Potential"]


def _as_array(x, name):
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if x.ndim < 1:
        raise ValueError(f"{name} must have a last axis of weights (shape (..., d)), got shape {x.shape}")
    return x


@dataclasses.dataclass(frozen=True, eq=False)
class Potential:
    """A pair potential ``Phi(u, v) = E_X[sigma(X, u) sigma(X, v)]``, ``X ~ N(0, I_d)``.

    Build one with :func:`earnshaw.potential`; identical arguments return the
    same object, so jit caches stay warm.

    Attributes:
      name: ``"erf"``, ``"yukawa"``, ...
      kind: ``"inner"`` (``fn(nu, c, nv)``) or ``"radial"`` (``fn(r)``).
      fn: the pure function of the Gram triple or of the distance.
      params: the parameters it was built with, as ``((key, value), ...)``.
      activation: the activation realising it, when known.
      d: the dimension a radial potential is defined in (``None``: any).
      value_at_zero: ``Phi(u, u)`` for radial potentials (``inf`` if unbounded).
      lam: Laplacian eigenvalue where the potential is ``lam``-harmonic
        (``0.0`` harmonic; ``None`` neither).
      harmonic_radius: radius beyond which ``Delta Phi = lam Phi`` holds (0: all ``r > 0``).
      smooth: twice differentiable away from the singular set.
      grams_fn: ``grams_fn(sets, blocks)``, Gram matrices of several sets of units in one evaluation (unbatched
        ``(n_i, d)`` sets; blocks ``(i, j)``), for potentials that are cheaper so (the fast Hermite tables:
        one check and one loop for a whole loss); ``None``: :meth:`gram` per block.
      partials_fn: ``partials_fn(U, W)``, ``Phi`` and its derivatives in ``|u|^2`` and ``u.v`` between each unit of
        ``U (n, d)`` and every unit of ``[U; W]``, three ``(n, n + m)`` matrices in one evaluation (the fast
        tables, :func:`~earnshaw.potentials.fast.fast_gram_partials`), from which :mod:`earnshaw.closed_form`
        writes the loss's gradient without a reverse pass; ``None``: none.

    Call it on two weight vectors, ``pot(u, v)`` (batch axes broadcast: ``(..., d)`` -> ``(...)``),
    or on two sets of units, ``pot.gram(U, V)``: ``(..., m, d), (..., n, d) -> (..., m, n)``.
    Biased units ``s(w . x + c)`` (inner-product potentials with an activation) pass their biases,
    ``pot(u, v, bu, bv)`` and ``pot.gram(U, V, bu, bv)`` (``bu (..., m)``, ``bv (..., n)``; ``None``
    is no bias, and both ``None`` is the unbiased function itself, unchanged).

    >>> import jax.numpy as jnp, earnshaw as es
    >>> pot = es.potential("erf")
    >>> pot is es.potential("erf"), pot.kind, pot.activation
    (True, 'inner', Activation('erf'))
    >>> u, v = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    >>> float(pot(u, v)), pot.gram(jnp.stack([u, v]), jnp.stack([u, v, u])).shape  # orthogonal: 0
    (0.0, (2, 3))
    """

    name: str
    kind: str
    fn: Callable
    params: tuple = ()
    activation: Optional[Activation] = None
    d: Optional[int] = None
    value_at_zero: Optional[float] = None
    lam: Optional[float] = None
    harmonic_radius: float = 0.0
    smooth: bool = True
    grams_fn: Optional[Callable] = None
    partials_fn: Optional[Callable] = None

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params)
        return f"Potential({self.name!r}{', ' + args if args else ''})"

    @property
    def bounded(self) -> bool:
        """Whether ``Phi(u, u)`` is finite (needed for eq. 1 and for realisability)."""
        return self.kind == "inner" or math.isfinite(self.value_at_zero)

    def _check_dim(self, *arrays_and_names):
        dims = {x.shape[-1] for x, _ in arrays_and_names}
        if len(dims) > 1:
            desc = ", ".join(f"{n} has shape {x.shape}" for x, n in arrays_and_names)
            raise ValueError(f"last axes (the dimension d) must agree: {desc}")
        if self.d is not None and dims != {self.d}:
            x, n = arrays_and_names[0]
            raise ValueError(f"{self!r} lives in d={self.d}, but {n} has shape {x.shape} (d={x.shape[-1]})")

    def _biases(self, X, bx, xname, Y, by, yname):
        """The two bias arrays, zeros for a missing one, shapes checked against the weights' leading axes."""
        out = []
        for W, b, wname in ((X, bx, xname), (Y, by, yname)):
            if b is None:
                out.append(jnp.zeros(W.shape[:-1], W.dtype))
                continue
            b = jnp.asarray(b, jnp.result_type(b, W.dtype))
            if b.shape != W.shape[:-1]:
                raise ValueError(f"the bias of {wname} must have shape {W.shape[:-1]} (its weights {W.shape} less "
                                 f"the last axis), got {b.shape}")
            out.append(b)
        return out

    def biased(self):
        """``(pair(nu, c, nv, bu, bv), self_term(nu, bu) or None)``: the potential of biased units
        (:func:`earnshaw.potentials.biased.biased_functions`); a ValueError if it has none."""
        from earnshaw.potentials.biased import biased_functions  # biased imports inner, which this module does not

        return biased_functions(self)

    def __call__(self, u, v, bu=None, bv=None):
        """``Phi(u, v)`` for ``u``, ``v`` of shape ``(..., d)`` (leading axes broadcast); ``bu``, ``bv``: biases
        of shape ``(...)`` or ``None``.

        >>> import jax.numpy as jnp, earnshaw as es
        >>> round(float(es.potential("linear")(jnp.ones(3), jnp.ones(3))), 6)
        3.0
        >>> round(float(es.potential("relu")(jnp.ones(3), jnp.ones(3), 1.0, -1.0)), 6)  # E[relu(U + 1) relu(U - 1)]
        1.148612
        """
        u, v = _as_array(u, "u"), _as_array(v, "v")
        self._check_dim((u, "u"), (v, "v"))
        if bu is not None or bv is not None:
            bu, bv = self._biases(u, bu, "u", v, bv, "v")
        return _compiled(self, "_pair", u, v, bu, bv)

    def _pair(self, u, v, bu, bv):
        if bu is not None:
            pair, _ = self.biased()
            return pair(jnp.sum(u * u, -1), jnp.sum(u * v, -1), jnp.sum(v * v, -1), bu, bv)
        if self.kind == "inner":
            return self.fn(jnp.sum(u * u, -1), jnp.sum(u * v, -1), jnp.sum(v * v, -1))
        return self.fn(safe_norm(u - v))

    def gram(self, U, V, bu=None, bv=None):
        """Matrix ``Phi(U_i, V_j)``.

        Args:
          U: ``(..., m, d)``.
          V: ``(..., n, d)``; leading axes broadcast.
          bu: biases of ``U``, ``(..., m)``, or ``None``.
          bv: biases of ``V``, ``(..., n)``, or ``None``.

        Returns:
          ``(..., m, n)``.

        >>> import jax.numpy as jnp, earnshaw as es
        >>> es.potential("erf").gram(jnp.ones((4, 3)), jnp.ones((2, 3))).shape
        (4, 2)
        """
        U, V = _as_array(U, "U"), _as_array(V, "V")
        if U.ndim < 2 or V.ndim < 2:
            raise ValueError(f"gram needs U (..., m, d) and V (..., n, d), got U {U.shape} and V {V.shape}")
        self._check_dim((U, "U"), (V, "V"))
        if bu is not None or bv is not None:
            bu, bv = self._biases(U, bu, "U", V, bv, "V")
        return _compiled(self, "_gram", U, V, bu, bv)

    def _gram(self, U, V, bu, bv):
        if bu is not None:
            pair, _ = self.biased()
            c = jnp.einsum("...md,...nd->...mn", U, V)
            return pair(jnp.sum(U * U, -1)[..., :, None], c, jnp.sum(V * V, -1)[..., None, :],
                        bu[..., :, None], bv[..., None, :])
        if self.grams_fn is not None:
            return self.grams((U, V), ((0, 1),))[0]
        if self.kind == "inner":
            c = jnp.einsum("...md,...nd->...mn", U, V)
            return self.fn(jnp.sum(U * U, -1)[..., :, None], c, jnp.sum(V * V, -1)[..., None, :])
        return self.fn(safe_norm(U[..., :, None, :] - V[..., None, :, :]))

    def grams(self, sets, blocks):
        """Gram matrices among several sets of units: ``gram(sets[i], sets[j])`` for each ``(i, j)`` in ``blocks``,
        ``self_gram(sets[i])`` where ``i == j``; one evaluation for all of them where the potential has one
        (``grams_fn``), else a call per block.

        Args:
          sets: weight matrices ``(..., n_i, d)``; leading axes broadcast.
          blocks: pairs of indices into ``sets``.

        Returns:
          A tuple of ``(..., n_i, n_j)`` matrices.

        >>> import jax.numpy as jnp, earnshaw as es
        >>> K, B = es.potential("erf").grams((jnp.ones((3, 2)), jnp.ones((4, 2))), ((0, 0), (0, 1)))
        >>> K.shape, B.shape
        ((3, 3), (3, 4))
        """
        sets = tuple(_as_array(s, f"sets[{i}]") for i, s in enumerate(sets))
        for i, s in enumerate(sets):
            if s.ndim < 2:
                raise ValueError(f"grams needs sets of shape (..., n, d), got sets[{i}] of shape {s.shape}")
        self._check_dim(*((s, f"sets[{i}]") for i, s in enumerate(sets)))
        if self.grams_fn is None:
            return tuple(self.self_gram(sets[i]) if i == j else self.gram(sets[i], sets[j]) for i, j in blocks)
        batch = jnp.broadcast_shapes(*(s.shape[:-2] for s in sets))
        # a set without batch axes (the teacher, often) stays unbatched under vmap: computed once
        sets = tuple(s if s.ndim == 2 else jnp.broadcast_to(s, batch + s.shape[-2:]) for s in sets)
        blocks = tuple(tuple(b) for b in blocks)

        def one(*unbatched):
            return self.grams_fn(unbatched, blocks)
        for _ in batch:
            one = jax.vmap(one, in_axes=tuple(None if s.ndim == 2 else 0 for s in sets))
        return one(*sets)

    def self_gram(self, U, bu=None):
        """``gram(U, U)`` with an exact, finite-gradient diagonal ``Phi(U_i, U_i)``; ``bu (..., m)``: biases.

        For radial potentials the diagonal is the constant ``value_at_zero`` and the
        off-diagonal is evaluated away from ``r = 0``, so unbounded potentials
        (coulomb, yukawa) give ``inf`` only on the diagonal, with no NaN gradients.

        Args:
          U: ``(..., m, d)``. Returns ``(..., m, m)``.
        """
        U = _as_array(U, "U")
        if bu is not None:
            bu = self._biases(U, bu, "U", U, None, "U")[0]
        return _compiled(self, "_self_gram", U, bu)

    def _self_gram(self, U, bu):
        if bu is not None:
            G = self.gram(U, U, bu, bu)
            _, self_term = self.biased()
            if self_term is None:
                return G
            eye = jnp.eye(U.shape[-2], dtype=bool)
            return jnp.where(eye, self_term(jnp.sum(U * U, -1), jnp.asarray(bu, G.dtype))[..., None, :], G)
        if self.grams_fn is not None:
            return self.grams((U,), ((0, 0),))[0]
        if self.kind == "inner":
            return self.gram(U, U)
        m = U.shape[-2]
        eye = jnp.eye(m, dtype=bool)
        diff = U[..., :, None, :] - U[..., None, :, :]
        # Shift the diagonal away from 0 before the (singular) radial function, then overwrite it.
        diff = jnp.where(eye[..., None], jnp.ones_like(diff), diff)
        off = self.fn(safe_norm(diff))
        return jnp.where(eye, jnp.asarray(self.value_at_zero, off.dtype), off)

    def grad1(self, u, v):
        """``nabla_1 Phi(u, v)``, the gradient in the first argument; ``(..., d)``."""
        u, v = jnp.broadcast_arrays(_as_array(u, "u"), _as_array(v, "v"))
        g = jax.grad(lambda a, b: self(a, b))
        for _ in range(u.ndim - 1):
            g = jax.vmap(g)
        return g(u, v)

    def profile(self, r):
        """A radial potential as a function of distance, ``phi(r)`` (any shape)."""
        if self.kind != "radial":
            raise ValueError(f"{self!r} is not radial; evaluate it on vectors with pot(u, v)")
        return self.fn(jnp.asarray(r, jnp.result_type(r, float)))


# A potential's Gram matrices as compiled programs, one per potential (hashed by identity: ``potential`` returns the
# same object for the same arguments) and shapes. Called eagerly, they would dispatch each operation on its own and,
# on first use, compile each; inside a traced program they are inlined.
@functools.partial(jax.jit, static_argnums=(0, 1))
def _compiled(pot, method, *args):
    return getattr(pot, method)(*args)

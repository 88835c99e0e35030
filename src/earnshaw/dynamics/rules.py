r"""Update rules, apart from the loop that drives them (:mod:`earnshaw.dynamics.loop`).

First-order rules are optax ``GradientTransformation``\ s: gradient descent is ``optax.sgd``, and
perturbed GD (:func:`perturbed_sgd`) is a transformation of its own, so any optax optimiser
(``optax.adam``, ``optax.sgd(momentum=...)``, a chain) runs through the same batched,
divergence-checked loop (:func:`earnshaw.optimize`). The second-order steps need the Hessian and
are loop rules ``(i, x, state, value, grad) -> (x_new, state, flag)``.

Corrections to the paper (docs/math.md sections 5 and 8): the Hessian step is
``x - alpha |lambda_min| sgn(grad . v) v`` (the printed sign goes uphill); SecondGD's
threshold uses ``alpha^2 gamma^3 / 3`` (Lemma 19 with the 1/2 of Taylor's term).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from earnshaw import trajectory as _tr

__all__ = ["perturbed_sgd", "PerturbedState", "from_optax", "hessian_step", "second_step", "hd_direction"]


class PerturbedState(NamedTuple):
    """State of :func:`perturbed_sgd`: its PRNG key, the step of the last kick and the step count."""

    key: jax.Array
    last_kick: jax.Array
    count: jax.Array


def perturbed_sgd(learning_rate, key, *, g_thres: float = 1e-3, radius: float = 1e-2, t_thres: int = 100,
                  mask=None) -> optax.GradientTransformation:
    """Perturbed gradient descent (Jin et al., 2017) as an optax transformation.

    A step ``-learning_rate * g``, except when ``|g| <= g_thres`` and no kick happened in the last
    ``t_thres`` steps: then a kick drawn uniformly from the ball of radius ``radius`` (over the
    coordinates where ``mask`` is 1), which escapes strict saddles.

    Args:
      learning_rate: scalar step size. key: PRNG key of the kicks.
      g_thres, radius, t_thres: see above. mask: ``(n,)`` 1 on trainable coordinates (default all).

    >>> import jax, jax.numpy as jnp, optax
    >>> opt = perturbed_sgd(0.1, jax.random.key(0), g_thres=1e-3, radius=0.5, t_thres=1)
    >>> x = jnp.zeros(3); state = opt.init(x)
    >>> kick, state = opt.update(jnp.zeros(3), state, x)   # a zero gradient: kicked off the point
    >>> bool(0 < jnp.linalg.norm(kick) <= 0.5)
    True
    """

    def init(params):
        return PerturbedState(key, jnp.asarray(-(10**9), jnp.int32), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        g = updates
        k, sub = jax.random.split(state.key)
        m = jnp.ones_like(g) if mask is None else mask
        u = jax.random.normal(sub, g.shape, g.dtype) * m
        r = radius * jax.random.uniform(jax.random.fold_in(sub, 1), (), g.dtype) ** (1.0 / max(g.size, 1))
        noise = r * u / jnp.maximum(jnp.linalg.norm(u), 1e-30)
        kick = (jnp.linalg.norm(g) <= g_thres) & (state.count - state.last_kick >= t_thres)
        step = jnp.where(kick, noise, -learning_rate * g)
        return step, PerturbedState(k, jnp.where(kick, state.count, state.last_kick), state.count + 1)

    return optax.GradientTransformation(init, update)


def from_optax(optimizer: optax.GradientTransformation, x0):
    """A loop rule and its start state from an optax transformation on the flat vector ``x0``."""

    def update(i, x, state, val, g):
        step, state = optimizer.update(g, state, x)
        return optax.apply_updates(x, step), state, jnp.asarray(_tr.RUNNING)

    return update, optimizer.init(x0)


def hd_direction(flat, x, g):
    """Smallest eigenpair of the (masked, Riemannian) Hessian and the corrected HD step direction.

    ``g`` is the loop's (tangent) gradient, which sets the step's sign; the Riemannian Hessian's curvature term
    ``-(theta_i . grad_i) I`` needs the Euclidean gradient, whose radial part the tangent one has lost, so it is
    evaluated here (on R^d the term is absent and XLA drops the evaluation).
    """
    H = flat.riemannian_hessian(flat.hessian(x), flat.grad(x) * flat.mask, x)
    mask = flat.mask
    frozen = 1.0 - mask
    big = jnp.max(jnp.abs(H)) * 10.0 + 1.0
    H = H * mask[:, None] * mask[None, :] + jnp.diag(frozen * big)
    lam, vecs = jnp.linalg.eigh(0.5 * (H + H.T))
    v = vecs[:, 0]
    s = jnp.where(jnp.dot(g, v) < 0, -1.0, 1.0)
    return lam[0], s * v


def hessian_step(flat, lr, gamma):
    """Hessian descent (Algorithm 1, sign corrected); flags ``converged`` once ``lambda_min >= -gamma``."""

    def update(i, x, state, val, g):
        lam, v = hd_direction(flat, x, g)
        done = lam >= -gamma
        return x - lr * jnp.abs(lam) * v, state, jnp.where(done, _tr.CONVERGED, _tr.RUNNING)
    return update, (), None


def second_step(flat, lr, eta, gamma):
    """SecondGD (Algorithm 2): a gradient step when ``|g| >= eta``, else a Hessian step.

    Returns the rule, its state and the stall threshold ``min(lr eta^2 / 2, lr^2 gamma^3 / 3)``: the loop
    stops (``stalled``) when a step lowers the objective by less (checked on the value it computes anyway).
    """
    thr = jnp.minimum(lr * eta**2 / 2.0, lr**2 * gamma**3 / 3.0)

    def update(i, x, state, val, g):
        big = jnp.linalg.norm(g) >= eta
        x_gd = x - lr * g

        def hd(_):
            lam, v = hd_direction(flat, x, g)
            return x - lr * jnp.abs(lam) * v

        x_new = jax.lax.cond(big, lambda _: x_gd, hd, None)
        return x_new, state, jnp.asarray(_tr.RUNNING)
    return update, (), thr

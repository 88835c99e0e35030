r"""The driving loop every discrete method runs: a ``lax.scan`` over save points whose body is a
``lax.while_loop`` over steps, so runs stop early (converged, stalled, diverged) and a batch of
problems is one ``vmap`` of the whole run, compiled once.

An update rule is ``update(i, x, state, value, grad) -> (x_new, state, flag)`` on a flat parameter
vector (:mod:`earnshaw.dynamics.rules` builds them, from optax transformations or the Hessian steps);
the loop evaluates the objective, projects onto the manifold, checks for NaN/Inf and blow-ups, and
records the saves. It sees the objective through a :class:`Flat` record, so node-wise descent runs
it on one unit's objective exactly as the solvers run it on a whole :class:`~earnshaw.Problem`.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from earnshaw import trajectory as _tr
from earnshaw.trajectory import Trajectory

__all__ = ["Flat", "flat_of", "euclidean", "drive", "trajectory", "unit_norm"]

_BLOWUP = 1e12


class Flat(NamedTuple):
    """An objective of one flat vector ``x (n,)`` and what the loop needs around it."""

    f: Callable
    grad: Callable
    value_and_grad: Callable
    hessian: Callable
    mask: jax.Array
    project: Callable
    tangent: Callable
    riemannian_hessian: Callable


def flat_of(problem, x0) -> Flat:
    """The :class:`Flat` view of a (single) :class:`~earnshaw.Problem` at start ``x0 (n,)``."""
    return Flat(problem.f, problem.flat_grad, problem.value_and_grad_fn(), problem.flat_hessian, problem.mask(x0),
                problem.project, problem.tangent, problem.riemannian_hessian)


def euclidean(f, x0, value_and_grad=None) -> Flat:
    """A :class:`Flat` for a plain objective ``f`` on ``R^n`` with every coordinate trainable (autodiff)."""
    return Flat(f, jax.grad(f), value_and_grad or jax.value_and_grad(f), jax.hessian(f), jnp.ones_like(x0),
                lambda x: x, lambda g, x: g, lambda H, g, x: H)


def unit_norm(d: int) -> Callable:
    """``g -> max_i |(g_{a_i}, g_{theta_i})|``: the largest per-unit gradient norm of a flat vector
    ``[a (k,), theta (k d,)]`` (Safran and Shamir's stopping rule), for ``drive``'s ``gnorm``.

    >>> import jax.numpy as jnp
    >>> float(unit_norm(2)(jnp.array([0.0, 3.0, 0.0, 0.0, 4.0, 0.0])))   # units (0; 0, 0) and (3; 4, 0)
    5.0
    """
    def norm(g):
        k = g.shape[-1] // (d + 1)
        per = g[..., :k] ** 2 + jnp.sum(g[..., k:].reshape(*g.shape[:-1], k, d) ** 2, -1)
        return jnp.sqrt(jnp.max(per, -1))
    return norm


def drive(flat: Flat, x0, update, state0, *, max_steps: int, save_every: int, gtol: float, needs_value=True,
          stall=None, gnorm=None):
    """Drive ``update`` from ``x0``; returns the per-save records and the end state.

    Methods that do not look at the objective's value (GD, any optax rule) evaluate only the
    gradient per step (the value's arcsin is the costly half of erf's loss in float64); their
    value is computed at the save points, and divergence is caught from the gradient.
    ``stall``: SecondGD's rule, status ``stalled`` (and the step rejected) when the new value is not
    below the old one by at least ``stall``. ``gnorm``: the norm of the gradient the stopping rule
    ``gnorm(g) < gtol`` uses (default Euclidean; e.g. the largest per-unit norm, :func:`unit_norm`).
    """
    stop_norm = jnp.linalg.norm if gnorm is None else gnorm
    n_chunks = -(-max_steps // save_every)
    mask = flat.mask

    def evaluate(x):
        if needs_value:
            val, g = flat.value_and_grad(x)
        else:
            val, g = jnp.zeros((), x.dtype), flat.grad(x)
        return val, flat.tangent(g * mask, x)

    def finite(val, g, ref_val, ref_gn):
        gn = jnp.linalg.norm(g)
        ok = jnp.isfinite(val) & jnp.all(jnp.isfinite(g)) & (gn <= _BLOWUP * (1.0 + ref_gn))
        return ok & (jnp.abs(val) <= _BLOWUP * (1.0 + jnp.abs(ref_val)))

    # The start point is evaluated by the loop body itself (its first pass, ``fresh``), so the program
    # holds one copy of the objective and gradient, not two (0.3-0.5 s less to compile with a Hessian).
    zero = jnp.zeros((), x0.dtype)
    carry0 = dict(i=jnp.zeros((), jnp.int32), x=x0, val=zero, g=jnp.zeros_like(x0), state=state0,
                  status=jnp.asarray(_tr.RUNNING), nev=jnp.ones((), jnp.int32), gn0=zero, fresh=jnp.asarray(True))

    def body(c):
        fresh = c["fresh"]
        # The step is computed on the fresh pass too and discarded (a lax.cond around it measured 0.3-0.5 s
        # more compile in node-wise descent's nested loops); an infinite gradient sends SecondGD down its
        # cheap (GD) branch there.
        g_in = jnp.where(fresh, jnp.inf, c["g"])
        x_upd, state, flag = update(c["i"], c["x"], c["state"], c["val"], g_in)
        x_new = jnp.where(fresh, c["x"], flat.project(x_upd))
        val, g = evaluate(x_new)
        gn = jnp.linalg.norm(g)
        gn0 = jnp.where(fresh, gn, c["gn0"])
        if stall is not None:
            flag = jnp.where((flag == _tr.RUNNING) & (val >= c["val"] - stall), _tr.STALLED, flag)
        ok = finite(val, g, jnp.where(fresh, 0.0, c["val"]), jnp.where(fresh, 0.0, gn0))
        flag = jnp.where(fresh, _tr.RUNNING, flag)
        accept = (ok & (flag == _tr.RUNNING)) | fresh
        status = jnp.where(~ok, _tr.DIVERGED, jnp.where(flag != _tr.RUNNING, flag,
                                                         jnp.where(stop_norm(g) < gtol, _tr.CONVERGED,
                                                                   _tr.RUNNING)))
        pick = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
        keep = lambda new, old: jnp.where(fresh, old, pick(new, old))  # noqa: E731
        return dict(i=c["i"] + ~fresh, x=pick(x_new, c["x"]), val=pick(val, c["val"]), g=pick(g, c["g"]),
                    state=jax.tree_util.tree_map(keep, state, c["state"]), status=status,
                    nev=c["nev"] + ~fresh, gn0=gn0, fresh=jnp.asarray(False))

    def value(c):
        return c["val"] if needs_value else flat.f(c["x"])

    def chunk(c, _):
        record = (c["x"], value(c), jnp.linalg.norm(c["g"]), c["i"], c["status"] == _tr.RUNNING)
        # chunk 0 only evaluates the start point (its record is dropped); the others take save_every steps
        stop_at = jnp.where(c["fresh"], 0, jnp.minimum(c["i"] + save_every, max_steps))
        c = jax.lax.while_loop(lambda c: c["fresh"] | ((c["i"] < stop_at) & (c["status"] == _tr.RUNNING)), body, c)
        return c, record

    end, records = jax.lax.scan(chunk, carry0, None, length=n_chunks + 1)
    xs, vals, gns, its, alive = (r[1:] for r in records)
    end = dict(end, val=value(end))
    # a run that blew up between saves: its value at the last finite point
    status = jnp.where(end["status"] == _tr.RUNNING, _tr.MAX_STEPS, end["status"])
    status = jnp.where(jnp.isfinite(end["val"]), status, _tr.DIVERGED)
    # the end point is the last record; earlier records taken after the run stopped repeat it
    xs = jnp.concatenate([xs, end["x"][None]])
    vals = jnp.concatenate([vals, end["val"][None]])
    gns = jnp.concatenate([gns, jnp.linalg.norm(end["g"])[None]])
    its = jnp.concatenate([its, end["i"][None]])
    saved = jnp.concatenate([jnp.ones((1,), bool), alive[1:], jnp.ones((1,), bool)])
    return xs, vals, gns, its, saved, end, status


def trajectory(unflatten, xs, vals, gns, its, saved, end, status) -> Trajectory:
    """The :class:`Trajectory` of :func:`drive`'s records; ``unflatten`` maps flat vectors to students."""
    return Trajectory(ts=its.astype(vals.dtype), losses=vals, grad_norms=gns, params=unflatten(xs),
                      final=unflatten(end["x"]), final_loss=end["val"],
                      final_grad_norm=jnp.linalg.norm(end["g"]), n_grad_evals=end["nev"], n_steps=end["i"],
                      status=status, saved=saved)

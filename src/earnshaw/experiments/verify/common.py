"""Helpers shared by the theorem checks: the row format, PRNG keys, random problems, labels."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student, Teacher

ROW_KEYS = ("check", "activation", "potential", "claim", "run", "seeds", "success", "worst", "verdict")


def _require_x64():
    if not jax.config.jax_enable_x64:
        raise RuntimeError("the theorem checks need float64: jax.config.update('jax_enable_x64', True)")


def _row(check, activation, potential, claim, run, ok, worst, *, min_rate=1.0, details=None, seconds=None):
    ok = np.asarray(ok, bool).reshape(-1)
    rate = float(ok.mean()) if ok.size else 0.0
    row = dict(check=check, activation=activation, potential=potential, claim=claim, run=run, seeds=int(ok.size),
               success=rate, worst=worst, verdict="PASS" if ok.size and rate >= min_rate else "FAIL")
    row["details"] = dict(details or {})
    if seconds is not None:
        row["details"]["seconds"] = seconds
    return row


def _keys(seed, n):
    return jax.random.split(jax.random.key(seed), n)



def _random_teacher(key, d, k, n, scale=1.0):
    kw, kb = jax.random.split(key)
    return Teacher(b=jax.random.normal(kb, (n, k)), w=scale * jax.random.normal(kw, (n, k, d)))


def _random_student(key, d, k, n, scale=1.0):
    kt, ka = jax.random.split(key)
    return Student(a=jax.random.normal(ka, (n, k)), theta=scale * jax.random.normal(kt, (n, k, d)))



def _pot_label(pot):
    args = ", ".join(f"{k}={v}" for k, v in pot.params if k != "order")
    return f"{pot.name}({args})" if args else pot.name


def _circle_label(name, pot):
    """The potential's label in the S^1 checks: the sign activation's closed form on the circle."""
    return "1 − 2·angle/π on S¹" if name == "sign" else _pot_label(pot)



AH_EPS = 0.5


def _separated(key, d, k, n, min_sep, scale=2.0):
    """``n`` (teacher, student) configurations whose charges are all at least ``min_sep`` apart."""
    tries = 4 * n + 16
    kt, ks = jax.random.split(key)
    t = _random_teacher(kt, d, k, tries, scale)
    s = _random_student(ks, d, k, tries, scale)
    pts = np.asarray(jnp.concatenate([s.theta, t.w], axis=1))
    dist = np.linalg.norm(pts[:, :, None] - pts[:, None], axis=-1) + np.eye(2 * k) * 1e9
    idx = np.flatnonzero(dist.min(axis=(-2, -1)) >= min_sep)[:n]
    if idx.size < n:
        raise RuntimeError("could not sample enough separated configurations")
    take = lambda x: x[idx]  # noqa: E731
    return jax.tree_util.tree_map(take, t), jax.tree_util.tree_map(take, s)



def _unresolved_a(traj):
    """``a`` after the last node: the saved point before the last when ``resolve_a`` appended one
    (``T = k + 2``), else the final ``a``. Works with batch axes (``params.a`` is ``(*B, T, k)``)."""
    a = traj.params.a
    return a[..., -2, :] if a.shape[-2] == a.shape[-1] + 2 else traj.final.a


def _min_dist(theta, w):
    return np.asarray(jnp.linalg.norm(theta[..., :, None, :] - w[..., None, :, :], axis=-1).min(axis=(-2, -1)))



def _circle(t):
    return jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)


def _angle_dist(t, s):
    return jnp.abs(jnp.mod(t - s + jnp.pi, 2 * jnp.pi) - jnp.pi)


"""A learning problem as a function of one flat parameter vector.

Solvers that need Hessians (HD, SecondGD, Newton polish, analysis) work on the
flat vector ``x = [a (k), theta (k*d)]``; this module builds the objective, the
trainable mask for ``train="both" | "theta" | "a"`` and the manifold projection.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from earnshaw._typing import Student, Teacher, check_pair
from earnshaw.loss import objective as _objective
from earnshaw.potentials import potential as _potential

__all__ = ["TRAIN", "MANIFOLDS", "flatten", "unflatten", "train_mask", "make_objective", "project",
           "riemannian_hessian", "batch_axes", "default_objective", "compile_options", "promote"]

TRAIN = ("both", "theta", "a")
MANIFOLDS = ("euclidean", "sphere")


def compile_options(n_batch_axes: int):
    """XLA options for a solver program: one problem is a chain of tiny matrix products, which
    Eigen's thread pool only slows down (k = d = 5 GD runs 2x faster on one thread); batches keep it."""
    return {"xla_cpu_multi_thread_eigen": False} if n_batch_axes == 0 else None


def check_options(train, manifold):
    if train not in TRAIN:
        raise ValueError(f"unknown train={train!r}; valid: {', '.join(TRAIN)}")
    if manifold not in MANIFOLDS:
        raise ValueError(f"unknown manifold={manifold!r}; valid: {', '.join(MANIFOLDS)}")


def default_objective(pot):
    """``"L"`` (eq. 1) for bounded potentials, ``"reduced"`` (eq. 2) for unbounded ones."""
    return "L" if _potential(pot).bounded else "reduced"


def flatten(student: Student):
    """``[a, theta.ravel()]`` on the last axes: ``(*B, k + k d)``."""
    a, th = student.a, student.theta
    return jnp.concatenate([a, th.reshape(*th.shape[:-2], -1)], axis=-1)


def unflatten(x, k: int, d: int) -> Student:
    return Student(a=x[..., :k], theta=x[..., k:].reshape(*x.shape[:-1], k, d))


def train_mask(k: int, d: int, train: str, dtype):
    """1 on trainable coordinates of the flat vector, 0 on frozen ones."""
    ma = 1.0 if train in ("both", "a") else 0.0
    mt = 1.0 if train in ("both", "theta") else 0.0
    return jnp.concatenate([jnp.full((k,), ma, dtype), jnp.full((k * d,), mt, dtype)])


def make_objective(pot, teacher: Teacher, k: int, d: int, name: str):
    """``f(x)``: the objective ``name`` of the flat student vector (single problem)."""
    fn = _objective(name)
    return lambda x: fn(pot, unflatten(x, k, d), teacher)


def project(x, k: int, d: int, manifold: str):
    """Algorithm 4's ``Pi_M``: identity on R^d; each ``theta_i -> theta_i / |theta_i|`` on the sphere."""
    if manifold == "euclidean":
        return x
    s = unflatten(x, k, d)
    th = s.theta / jnp.linalg.norm(s.theta, axis=-1, keepdims=True)
    return flatten(Student(a=s.a, theta=th))


def tangent(g, x, k: int, d: int, manifold: str):
    """Project a gradient onto the tangent space (sphere: remove the radial part of each theta_i)."""
    if manifold == "euclidean":
        return g
    gs, xs = unflatten(g, k, d), unflatten(x, k, d)
    radial = jnp.sum(gs.theta * xs.theta, -1, keepdims=True) * xs.theta
    return flatten(Student(a=gs.a, theta=gs.theta - radial))


def riemannian_hessian(H, g, x, k: int, d: int, manifold: str):
    """Hessian on the manifold: ``P (H - diag(theta_i . grad_i) I) P`` on spheres (MATH.md section 5)."""
    if manifold == "euclidean":
        return H
    xs, gs = unflatten(x, k, d), unflatten(g, k, d)
    P_blocks = jnp.eye(d) - xs.theta[:, :, None] * xs.theta[:, None, :]
    n = k + k * d
    P = jnp.zeros((n, n), H.dtype).at[:k, :k].set(jnp.eye(k, dtype=H.dtype))
    P = P.at[k:, k:].set(jax.scipy.linalg.block_diag(*P_blocks))
    shift = jnp.concatenate([jnp.zeros(k, H.dtype), jnp.repeat(jnp.sum(xs.theta * gs.theta, -1), d)])
    return P @ (H - jnp.diag(shift)) @ P


def promote(student: Student, teacher: Teacher):
    """Both pytrees cast to one floating dtype (a float32 student against a float64 teacher runs in float64)."""
    dtype = jnp.result_type(student.a, student.theta, teacher.b, teacher.w, float)
    cast = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    return jax.tree_util.tree_map(cast, student), jax.tree_util.tree_map(cast, teacher)


def batch_axes(student: Student, teacher: Teacher):
    """Number of batch axes of the student, and whether the teacher is batched alongside."""
    check_pair(student, teacher)
    nb = student.a.ndim - 1
    tb = teacher.b.ndim - 1
    if tb not in (0, nb) or (tb and teacher.b.shape[:-1] != student.a.shape[:-1]):
        raise ValueError(f"teacher batch shape {teacher.b.shape[:-1]} must be () or the student's "
                         f"{student.a.shape[:-1]}")
    return nb, tb > 0

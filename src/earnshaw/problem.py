r"""The learning problem, bound once: a potential, a teacher, an objective, what trains, where.

Every solver, ``refine``, ``hessian``, ``spectrum`` and ``analyze`` takes a :class:`Problem`
(or the prefix ``pot, teacher`` it is built from). Solvers and the landscape work on one flat
vector per student, ``x = [a (k), theta.ravel() (k d)]`` (``jax.flatten_util.ravel_pytree``'s
layout of a :class:`Student`); the problem holds the objective of that vector, its gradient
(a hand-derived one where it applies: erf, relu, the fast tables; :mod:`earnshaw.closed_form`), its Hessian,
the trainable mask and the manifold's projection. Dynamics and landscape both import this module; neither imports
the other.

Batching: every function here is written for one problem; :func:`vmap_batch` lifts one to any
number of leading batch axes (seeds, teachers, step sizes), the one place that pattern is written.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from earnshaw import closed_form as _cf
from earnshaw._typing import Student, Teacher
from earnshaw.inputs import check_inputs, whiten
from earnshaw.loss import OBJECTIVES, objective as _objective
from earnshaw.potentials import MixedPotential, Potential, potential as _potential

__all__ = ["Problem", "TRAIN", "TRAIN_GROUPS", "train_groups", "MANIFOLDS", "vmap_batch", "as_student", "as_teacher", "resolve", "batch_axes",
           "promote", "check_lr", "split_keys", "check_finite_start",
           "compile_options", "default_objective"]

#: Which variables move: both layers, the first (``theta``, output weights fixed) or the second (``a``).
#: A student's biases belong to the first layer: they train with ``"both"`` and ``"theta"``.
TRAIN = ("both", "theta", "a")
#: The variable groups a ``"+"``-joined ``train`` names explicitly, e.g. ``"a+theta"`` (biases fixed).
TRAIN_GROUPS = ("a", "theta", "bias")
#: Where each ``theta_i`` lives: ``R^d`` or the unit sphere (Appendix F).
MANIFOLDS = ("euclidean", "sphere")
_AUX = ("pot", "objective", "train", "manifold", "gradient", "student_bias", "input_mean", "input_cov")
_ALIASES = {"both": frozenset(TRAIN_GROUPS), "theta": frozenset({"theta", "bias"}), "a": frozenset({"a"})}


def train_groups(train: str) -> frozenset:
    """The variable groups ``train`` moves: ``"both"``, ``"theta"`` (the first layer: weights and biases), ``"a"``,
    or a ``"+"``-join of :data:`TRAIN_GROUPS` (``"a+theta"``: biases fixed; ``"bias"``: biases alone).

    >>> sorted(train_groups("theta")), sorted(train_groups("a+theta"))
    (['bias', 'theta'], ['a', 'theta'])
    """
    if not isinstance(train, str):
        raise ValueError(f"train must be a string, got {train!r}")
    if train in _ALIASES:
        return _ALIASES[train]
    parts = train.split("+")
    if not parts or any(p not in TRAIN_GROUPS for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"unknown train={train!r}; valid: {', '.join(TRAIN)}, or a '+'-join of "
                         f"{', '.join(TRAIN_GROUPS)} (e.g. 'a+theta' keeps biases fixed)")
    return frozenset(parts)


def _as_tuple(x):
    """A hashable copy of an array (static problem data: part of the compiled program)."""
    return None if x is None else tuple(map(_as_tuple, x)) if np.ndim(x) > 1 else tuple(float(v) for v in x)


def default_objective(pot) -> str:
    """``"L"`` (eq. 1) for bounded potentials, ``"reduced"`` (eq. 2) for unbounded ones."""
    return "L" if _potential(pot).bounded else "reduced"


def compile_options(n_batch_axes: int):
    """XLA options for a solver program: one problem is a chain of tiny matrix products, which
    Eigen's thread pool only slows down (k = d = 5 GD runs 2x faster on one thread); batches keep it."""
    return {"xla_cpu_multi_thread_eigen": False} if n_batch_axes == 0 else None


def vmap_batch(fn: Callable, n_axes: int, in_axes) -> Callable:
    """``fn`` of one problem lifted to ``n_axes`` leading batch axes (``jax.vmap`` once per axis).

    >>> import jax.numpy as jnp
    >>> vmap_batch(jnp.sum, 2, 0)(jnp.ones((4, 3, 5))).shape
    (4, 3)
    """
    for _ in range(n_axes):
        fn = jax.vmap(fn, in_axes=in_axes)
    return fn


def _float_array(x, name):
    try:
        x = jnp.asarray(x)
    except TypeError:
        raise TypeError(f"{name} must be an array-like of numbers, got {type(x).__name__}") from None
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def as_student(student, name: str = "student") -> Student:
    """A :class:`Student` with float arrays (Python lists and NumPy arrays accepted), or a TypeError naming the type.

    >>> as_student(Student(a=[1.0, 2.0], theta=[[0.0, 1.0], [1.0, 0.0]])).theta.shape
    (2, 2)
    """
    if not isinstance(student, Student):
        raise TypeError(f"{name} must be an earnshaw.Student(a=..., theta=...), got {type(student).__name__}")
    return Student(a=_float_array(student.a, f"{name}.a"), theta=_float_array(student.theta, f"{name}.theta"),
                   bias=None if student.bias is None else _float_array(student.bias, f"{name}.bias"))


def as_teacher(teacher, name: str = "teacher") -> Teacher:
    """A :class:`Teacher` with float arrays, or a TypeError naming the type; see :func:`as_student`."""
    if not isinstance(teacher, Teacher):
        raise TypeError(f"{name} must be an earnshaw.Teacher(b=..., w=...), got {type(teacher).__name__}")
    return Teacher(b=_float_array(teacher.b, f"{name}.b"), w=_float_array(teacher.w, f"{name}.w"),
                   bias=None if teacher.bias is None else _float_array(teacher.bias, f"{name}.bias"))


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A learning problem: the teacher to learn, the potential, the objective, what trains and where.

    A frozen pytree: the teacher's arrays are its leaves (a batch of teachers is a batch of
    problems), everything else is static, so ``jax.jit`` compiles once per kind of problem.

    Attributes:
      pot: :class:`~earnshaw.potentials.Potential` (a name is resolved with :func:`earnshaw.potential`), or a
        :class:`~earnshaw.potentials.MixedPotential` for per-unit activations (a list of names, one per unit,
        is resolved to one: ``es.Problem(["erf", "relu"], teacher)``); the teacher's length is checked here,
        the student's where it meets the problem.
      teacher: :class:`Teacher`, ``b (*B, m)``, ``w (*B, m, d)``.
      objective: ``"L"`` (eq. 1), ``"G"`` (``L + |a|^2``), ``"reduced"`` (eq. 2), or a callable
        ``f(pot, teacher, student) -> scalar``; default ``"L"`` for bounded potentials, ``"reduced"``
        for unbounded ones.
      train: ``"both"``, ``"theta"`` (output weights fixed at the student's values) or ``"a"``; biases train with
        ``theta``; a ``"+"``-join of ``a``, ``theta``, ``bias`` names exactly what moves (:func:`train_groups`).
      manifold: ``"euclidean"`` or ``"sphere"`` (each ``theta_i`` on the unit sphere).
      gradient: ``"auto"`` (a hand-derived gradient where one is known: erf, relu, the fast tables; else autodiff),
        ``"autodiff"`` or ``"closed_form"``.
      student_bias: whether the students carry biases (their flat vectors end with ``k`` biases). The solvers
        set it from the student they are given; set it yourself only to call :meth:`unflatten` directly.
        The teacher's biases are ``teacher.bias``; ``train`` names which student variables move
        (:func:`train_groups`: ``"both"`` and ``"theta"`` move the biases too, ``"a+theta"`` keeps them fixed).
      input_mean: the input mean ``mu`` ``(d,)``, or ``None``: inputs ``X ~ N(mu, Sigma)``.
      input_cov: the input covariance ``Sigma`` ``(d, d)`` (positive definite), or ``None`` (identity).
        Both are applied inside the objective (:func:`earnshaw.whiten`), so students stay in the
        coordinates of ``X`` and gradients are exact. They are stored as tuples: static data, compiled into
        the problem's programs (a new ``Sigma`` compiles anew, a new teacher does not).

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.random_teacher(jax.random.key(0), d=3, k=2)
    >>> problem = es.Problem("erf", t, train="theta")
    >>> s = es.Student(a=t.b, theta=t.w + 0.1)
    >>> g = problem.grad(s)                      # a Student of gradients; zero on the frozen a
    >>> bool((g.a == 0).all()), problem.hessian(s).shape   # Hessian over theta alone: k d = 6
    (True, (6, 6))
    """

    pot: Union[Potential, MixedPotential]
    teacher: Teacher
    objective: Union[str, Callable, None] = None
    train: str = "both"
    manifold: str = "euclidean"
    gradient: str = "auto"
    student_bias: bool = False
    input_mean: object = None
    input_cov: object = None

    def __post_init__(self):
        pot = _potential(self.pot)
        object.__setattr__(self, "pot", pot)
        object.__setattr__(self, "teacher", as_teacher(self.teacher))
        train_groups(self.train)
        object.__setattr__(self, "student_bias", bool(self.student_bias))
        mu, L = check_inputs(self.input_mean, self.input_cov, self.teacher.d)
        object.__setattr__(self, "input_mean", _as_tuple(mu))
        object.__setattr__(self, "input_cov", None if L is None else _as_tuple(np.asarray(self.input_cov, float)))
        if isinstance(pot, MixedPotential):
            pot.check_units("teacher", self.teacher.k)
        if not self.plain:
            if pot.kind != "mixed" and (pot.kind != "inner" or pot.activation is None):
                pot.biased()  # raises: this potential has no biased form
            if self.gradient == "closed_form":
                raise ValueError("gradient='closed_form' is the hand-derived gradient of unbiased units under "
                                 "N(0, I) inputs; with biases or input_mean/input_cov use 'auto' or 'autodiff'")
        if self.manifold not in MANIFOLDS:
            raise ValueError(f"unknown manifold={self.manifold!r}; valid: {', '.join(MANIFOLDS)}")
        objective = default_objective(pot) if self.objective is None else self.objective
        if not callable(objective) and objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}, or a callable "
                             "f(pot, teacher, student)")
        object.__setattr__(self, "objective", objective)
        _cf.check_gradient(pot, objective, self.gradient)

    # --- pytree -----------------------------------------------------------------------------------------
    @property
    def plain(self) -> bool:
        """No biases anywhere and isotropic inputs: the paper's model, on its unchanged code path."""
        return (self.teacher.bias is None and not self.student_bias and self.input_mean is None
                and self.input_cov is None)

    def for_student(self, student: Student) -> "Problem":
        """This problem with :attr:`student_bias` matching ``student`` (itself when it already does)."""
        sb = student.bias is not None
        return self if sb == self.student_bias else self.replace(student_bias=sb)

    def inputs(self):
        """``(mu or None, L or None)``: the input map, as NumPy arrays (``Sigma = L L'``)."""
        if self.input_mean is None and self.input_cov is None:
            return None, None
        return check_inputs(self.input_mean, self.input_cov, self.d)

    def tree_flatten(self):
        return (self.teacher,), tuple(getattr(self, name) for name in _AUX)

    @classmethod
    def tree_unflatten(cls, aux, children):
        # no __post_init__: under vmap/jit the leaves are tracers or axis specs, and aux is already valid
        obj = object.__new__(cls)
        for name, value in zip(_AUX, aux):
            object.__setattr__(obj, name, value)
        object.__setattr__(obj, "teacher", children[0])
        return obj

    def replace(self, **changes) -> "Problem":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def d(self) -> int:
        """Input dimension."""
        return self.teacher.d

    @property
    def batch_shape(self) -> tuple:
        """The teacher's batch axes (``()`` for one problem)."""
        return self.teacher.batch_shape

    @property
    def closed_form(self) -> bool:
        """Whether the gradient is a hand-derived one (:mod:`earnshaw.closed_form`; ``gradient="auto"`` or
        ``"closed_form"``)."""
        return self.gradient != "autodiff" and self.plain and _cf.has_closed_form(self.pot, self.objective)

    def __repr__(self):
        obj = self.objective if isinstance(self.objective, str) else getattr(self.objective, "__name__", "callable")
        extra = "" if self.plain else (f", biases(teacher={self.teacher.bias is not None}, student={self.student_bias})"
                                       f", inputs={'N(mu, Sigma)' if self.input_mean or self.input_cov else 'N(0, I)'}")
        return (f"Problem({self.pot!r}, teacher(m={self.teacher.k}, d={self.d}, batch={self.batch_shape}), "
                f"objective={obj!r}, train={self.train!r}, manifold={self.manifold!r}{extra})")

    # --- flat vectors (one problem) -----------------------------------------------------------------------
    @property
    def unit_size(self) -> int:
        """Entries of a flat vector per student unit: ``1 + d`` (``a_i``, ``theta_i``), plus one for a bias."""
        return self.d + 1 + self.student_bias

    def unflatten(self, x) -> Student:
        """The :class:`Student` of flat vectors ``x (*B, k + k d [+ k])``; ``k`` is read from the length
        (the last ``k`` entries are the biases when :attr:`student_bias`)."""
        n, d, per = x.shape[-1], self.d, self.unit_size
        k = n // per
        if k * per != n:
            raise ValueError(f"a flat student vector has length k (1 + d{' + 1' if self.student_bias else ''}) = k * {per}"
                             f"{' (a, theta, bias per unit)' if self.student_bias else ''}; got {n}")
        bias = x[..., k + k * d:] if self.student_bias else None
        return Student(a=x[..., :k], theta=x[..., k:k + k * d].reshape(*x.shape[:-1], k, d), bias=bias)

    def flatten(self, student: Student):
        """``[a, theta.ravel(), bias]`` per problem: ``(*B, k + k d [+ k])`` (``ravel_pytree``'s layout)."""
        return vmap_batch(lambda s: ravel_pytree(s)[0], student.a.ndim - 1, 0)(student)

    def _mask_np(self, k: int):
        """The trainable pattern of a flat vector, as a static NumPy bool array ``(n,)``."""
        g = train_groups(self.train)
        parts = [np.full(k, "a" in g), np.full(k * self.d, "theta" in g)]
        if self.student_bias:
            parts.append(np.full(k, "bias" in g))
        return np.concatenate(parts)

    def mask(self, x):
        """1 on the trainable coordinates of ``x (n,)``, 0 on the frozen ones."""
        return jnp.asarray(self._mask_np(x.shape[-1] // self.unit_size), x.dtype)

    def isotropic(self, student: Student):
        """``(teacher, student)`` under ``N(0, I_d)`` inputs (:func:`earnshaw.whiten`); themselves when isotropic."""
        mu, L = self.inputs()
        if mu is None and L is None:
            return self.teacher, student
        return whiten(self.teacher, _checked=(mu, L)), whiten(student, _checked=(mu, L))

    def teacher_energy(self):
        """``E[f(X)^2] = b' Phi(w, w) b`` of the teacher (under the problem's inputs), batch shape."""
        t, _ = self.isotropic(Student(a=self.teacher.b, theta=self.teacher.w))
        side = {"side": "teacher"} if isinstance(self.pot, MixedPotential) else {}
        return jnp.einsum("...i,...ij,...j->...", t.b, self.pot.self_gram(t.w, t.bias, **side), t.b)

    def f(self, x):
        """The objective of one flat student vector ``x (n,)``."""
        return _flat(self, "_f", x)

    def _f(self, x):
        teacher, student = self.isotropic(self.unflatten(x))
        return _objective(self.objective)(self.pot, teacher, student)

    def flat_grad(self, x):
        """``grad f(x)``, ``(n,)``, over every coordinate (mask it for the trainable ones)."""
        return _flat(self, "_flat_grad", x)

    def _flat_grad(self, x):
        if self.closed_form:
            s = self.unflatten(x)
            ga, gt = _cf.gradient(s.a, s.theta, self.teacher.b, self.teacher.w, self.objective, pot=self.pot)
            return jnp.concatenate([ga, gt.reshape(-1)])
        return jax.grad(self.f)(x)

    def flat_value_and_grad(self, x):
        """``(f(x), grad f(x))``: with erf's closed form the value comes from the gradient's Gram matrices, so a
        program needing both holds one copy of the objective (the flow's saves, SecondGD, Hessian descent)."""
        return _flat(self, "_flat_value_and_grad", x)

    def _flat_value_and_grad(self, x):
        return self.value_and_grad_fn()(x)

    def value_and_grad_fn(self):
        """``x -> (f(x), grad f(x))`` with the teacher's constant ``b' Phi(w, w) b`` computed once, here: build it
        outside a loop and the loop body does not recompute the constant every step."""
        if self.closed_form:
            b, w, obj = self.teacher.b, self.teacher.w, self.objective
            const = _cf.teacher_term(b, w, self.pot) if obj != "reduced" else 0.0

            def vg(x):
                s = self.unflatten(x)
                value, ga, gt = _cf.value_and_gradient(s.a, s.theta, b, w, obj, const, pot=self.pot)
                return value, jnp.concatenate([ga, gt.reshape(-1)])
            return vg
        return jax.value_and_grad(self.f)

    def flat_hessian(self, x):
        """``(n, n)`` Euclidean Hessian over every coordinate. With erf's closed form it is the forward-mode
        Jacobian of the hand-derived gradient: no reverse pass, ~30% less to compile and run at k = d = 20."""
        return _flat(self, "_flat_hessian", x)

    def _flat_hessian(self, x):
        if self.plain and _cf.closed_form_hessian(self.pot, self.objective):
            return jax.jacfwd(self.replace(gradient="closed_form").flat_grad)(x)
        return jax.hessian(self.f)(x)

    def project(self, x):
        """The manifold's projection ``Pi_M`` (Algorithm 4): identity on ``R^d``; ``theta_i / |theta_i|`` on spheres."""
        if self.manifold == "euclidean":
            return x
        s = self.unflatten(x)
        return self._join(s.a, s.theta / jnp.linalg.norm(s.theta, axis=-1, keepdims=True), s.bias)

    @staticmethod
    def _join(a, theta, bias):
        return jnp.concatenate([a, theta.reshape(-1)] + ([] if bias is None else [bias]))

    def tangent(self, g, x):
        """A gradient projected onto the tangent space at ``x`` (spheres: each ``theta_i``'s radial part removed)."""
        if self.manifold == "euclidean":
            return g
        gs, xs = self.unflatten(g), self.unflatten(x)
        radial = jnp.sum(gs.theta * xs.theta, -1, keepdims=True) * xs.theta
        return self._join(gs.a, gs.theta - radial, gs.bias)

    def riemannian_hessian(self, H, g, x):
        """The Hessian on the manifold: ``P (H - diag(theta_i . grad_i) I) P`` on spheres (docs/math.md section 6),
        ``H`` itself on ``R^d``; ``g`` is the Euclidean gradient at ``x``."""
        if self.manifold == "euclidean":
            return H
        xs, gs = self.unflatten(x), self.unflatten(g)
        k, d = xs.a.shape[-1], self.d
        blocks = jnp.eye(d, dtype=H.dtype) - xs.theta[:, :, None] * xs.theta[:, None, :]
        tail = [jnp.eye(k, dtype=H.dtype)] if self.student_bias else []
        P = jax.scipy.linalg.block_diag(jnp.eye(k, dtype=H.dtype), *blocks, *tail)
        shift = jnp.concatenate([jnp.zeros(k, H.dtype), jnp.repeat(jnp.sum(xs.theta * gs.theta, -1), d)]
                                + [jnp.zeros(k, H.dtype)] * self.student_bias)
        return P @ (H - jnp.diag(shift)) @ P

    def n_free(self, k: int) -> int:
        """Dimension of the space the problem moves in: trainable coordinates, less one per unit on spheres."""
        g = train_groups(self.train)
        na = k if "a" in g else 0
        nt = k * (self.d - (self.manifold == "sphere")) if "theta" in g else 0
        nb = k if self.student_bias and "bias" in g else 0
        return na + nt + nb

    def free_eigh(self, H, g, x):
        """Eigen-decomposition of the Hessian restricted to the directions the problem moves in.

        Frozen coordinates (``train``) and the radial directions of spheres are shifted far above the
        spectrum and dropped. Returns ``(eigenvalues (n_free,), eigenvectors (n, n_free))``, ascending,
        for the Riemannian Hessian at ``x`` (``H``, ``g``: Euclidean Hessian and gradient there).
        """
        n = x.shape[-1]
        k = n // self.unit_size
        m = self.mask(x)
        R = self.riemannian_hessian(H, g, x) * m[:, None] * m[None, :]
        # the directions that do not move: frozen coordinates, then each theta_i's radial direction
        N = jnp.diag(1.0 - m)
        if self.manifold == "sphere" and "theta" in train_groups(self.train):
            th = self.unflatten(x).theta
            tail = [jnp.zeros((k, k), x.dtype)] if self.student_bias else []
            radial = jax.scipy.linalg.block_diag(jnp.zeros((k, k), x.dtype), *(th[:, :, None] * th[:, None, :]),
                                                 *tail)
            N = N + radial
        big = 10.0 * jnp.max(jnp.abs(R)) + 1.0
        lam, V = jnp.linalg.eigh(0.5 * (R + R.T) + big * N)
        nf = self.n_free(k)
        return lam[:nf], V[:, :nf]

    # --- Student-level API (any batch axes) ---------------------------------------------------------------
    def _batched(self, fn, student):
        nb, tb = batch_axes(student, self.teacher)
        return vmap_batch(fn, nb, (0 if tb else None, 0))(self.for_student(student), self.flatten(student))

    def value(self, student: Student):
        """The objective at ``student``: shape ``(*B,)``."""
        return _value(self, student)

    def grad(self, student: Student) -> Student:
        """The gradient over the trainable variables (zero on frozen ones; tangent on spheres), as a :class:`Student`."""
        return _grad(self, student)

    def value_and_grad(self, student: Student):
        """``(value (*B,), grad Student)``, as :meth:`value` and :meth:`grad`."""
        return _value_and_grad(self, student)

    def hessian(self, student: Student):
        """The Hessian over the trainable variables: ``(*B, n_t, n_t)`` in the flat layout restricted to them
        (``n_t = k + k d``, ``k d`` for ``train="theta"``, ``k`` for ``"a"``); Riemannian on spheres."""
        return _hessian(self, student)


@functools.partial(jax.jit, static_argnums=1)
def _flat(problem: Problem, method: str, x):
    """The flat API (:meth:`Problem.f`, ``flat_grad``, ...) as compiled programs: called eagerly, each operation
    would be dispatched, and on first use compiled, on its own; inside a traced program they are inlined."""
    return getattr(problem, method)(x)


# The Student-level API as compiled programs (one per kind of problem and student shape): run eagerly, each call
# would dispatch, and on first use compile, every operation of the objective and its derivatives on its own.
@jax.jit
def _value(problem: Problem, student: Student):
    return problem._batched(lambda p, x: p.f(x), student)


@jax.jit
def _grad(problem: Problem, student: Student) -> Student:
    return problem.for_student(student).unflatten(
        problem._batched(lambda p, x: p.tangent(p.flat_grad(x) * p.mask(x), x), student))


@jax.jit
def _value_and_grad(problem: Problem, student: Student):
    def vg(p, x):
        v, g = p.flat_value_and_grad(x)
        return v, p.tangent(g * p.mask(x), x)
    v, g = problem._batched(vg, student)
    return v, problem.for_student(student).unflatten(g)


@jax.jit
def _hessian(problem: Problem, student: Student):
    k = student.a.shape[-1]
    # numpy, not problem.mask: the index set must be static
    idx = np.flatnonzero(problem.for_student(student)._mask_np(k))

    def h(p, x):
        H = p.riemannian_hessian(p.flat_hessian(x), p.flat_grad(x), x)
        return H[jnp.ix_(idx, idx)]
    return problem._batched(h, student)


def batch_axes(student: Student, teacher: Teacher):
    """Number of batch axes of the student, and whether the teacher is batched alongside."""
    if student.d != teacher.d:
        raise ValueError(f"student.theta has shape {tuple(student.theta.shape)} and teacher.w "
                         f"{tuple(teacher.w.shape)}: their last axes (d) differ")
    nb = student.a.ndim - 1
    tb = teacher.b.ndim - 1
    if tb not in (0, nb) or (tb and teacher.b.shape[:-1] != student.a.shape[:-1]):
        raise ValueError(f"teacher batch shape {teacher.b.shape[:-1]} must be () or the student's "
                         f"{student.a.shape[:-1]}")
    return nb, tb > 0


def promote(problem: Problem, student: Student):
    """Student and teacher cast to one floating dtype (a float32 student against a float64 teacher runs in float64)."""
    t = problem.teacher
    leaves = jax.tree_util.tree_leaves((student, t))
    dtype = jnp.result_type(*leaves, float)
    if all(x.dtype == dtype for x in leaves):
        return problem, student
    cast = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    problem = jax.tree_util.tree_map(cast, problem)
    return problem, jax.tree_util.tree_map(cast, student)


def resolve(name: str, args: tuple, *, train=None, objective=None, manifold=None, gradient=None,
            need_student: bool = True):
    """``(problem, student)`` from a public function's positional arguments.

    Accepts ``(problem, student)`` or ``(pot, teacher, student)``; keyword options build the problem
    in the second form and replace its fields in the first. A TypeError names the accepted forms.
    """
    opts = {key: v for key, v in (("train", train), ("objective", objective), ("manifold", manifold),
                                   ("gradient", gradient)) if v is not None}
    form = (f"{name}(problem, student, ...) or {name}(pot, teacher, student, ...); options after the "
            "student are keyword-only")
    if args and isinstance(args[0], Problem):
        if len(args) > 2 or (need_student and len(args) < 2):
            raise TypeError(f"{name} takes {form}; got {len(args)} positional arguments")
        problem = args[0].replace(**opts) if opts else args[0]
        student = args[1] if len(args) == 2 else None
    else:
        if len(args) > 3 or len(args) < (3 if need_student else 2):
            raise TypeError(f"{name} takes {form}; got {len(args)} positional arguments")
        problem = Problem(args[0], args[1], **opts)
        student = args[2] if len(args) == 3 else None
    if student is not None:
        student = as_student(student)
        batch_axes(student, problem.teacher)
        problem = problem.for_student(student)
    return problem, student


def check_finite_start(student: Student, name: str) -> None:
    """A ValueError naming the problems whose start point holds NaN or Inf (not a run that 'diverged')."""
    bad = ~(np.isfinite(np.asarray(student.a)).all(-1) & np.isfinite(np.asarray(student.theta)).all((-1, -2)))
    if student.bias is not None:
        bad = bad | ~np.isfinite(np.asarray(student.bias)).all(-1)
    if bad.any():
        where = "" if bad.ndim == 0 else f" in problems {np.argwhere(bad).tolist()[:10]}"
        raise ValueError(f"{name}: the start point (student) holds NaN or Inf{where}; pass a finite start")


def check_lr(lr, student: Student):
    """``lr`` as an array of the student's dtype: a scalar, or one per problem (the batch shape)."""
    lr = jnp.asarray(lr, student.a.dtype)
    batch = student.a.shape[:-1]
    if lr.ndim not in (0, len(batch)) or (lr.ndim and lr.shape != batch):
        raise ValueError(f"lr must be a scalar or have the batch shape {batch}, got shape {lr.shape}")
    return lr


def split_keys(key, batch_shape: tuple):
    """One PRNG key per problem of a batch (``key`` itself for one problem)."""
    if not batch_shape:
        return key
    return jax.random.split(key, int(np.prod(batch_shape))).reshape(batch_shape)

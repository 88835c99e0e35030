r"""Correlated, non-centred inputs ``X ~ N(mu, Sigma)``, reduced exactly to ``Z ~ N(0, I_d)``.

With ``X = mu + L Z`` and ``Sigma = L L'`` (Cholesky), a unit's pre-activation is
``w . X + c = (L' w) . Z + (w . mu + c)``: a unit with weights ``L' w`` and bias ``c + w . mu``
under isotropic inputs (docs/math.md section 12). :func:`whiten` applies that map to a teacher or
a student; :class:`earnshaw.Problem` applies it inside its objective (``input_mean=``,
``input_cov=``), so the dynamics stay in the user's coordinates and gradients are exact by autodiff.
"""
from __future__ import annotations

from typing import Optional, Union

import jax.numpy as jnp
import numpy as np

from earnshaw._typing import Student, Teacher

__all__ = ["whiten", "check_inputs"]


def check_inputs(mean, cov, d: int):
    """``(mean (d,) or None, L (d, d) or None)`` as float64 NumPy arrays, ``cov = L L'``.

    Raises:
      ValueError: wrong shapes, non-finite entries, an asymmetric or non-positive-definite ``cov``.
    """
    mu = L = None
    if mean is not None:
        mu = np.asarray(mean, dtype=np.float64)
        if mu.shape != (d,):
            raise ValueError(f"input_mean must have shape (d,) = ({d},), got {mu.shape}")
        if not np.isfinite(mu).all():
            raise ValueError("input_mean holds NaN or Inf")
    if cov is not None:
        S = np.asarray(cov, dtype=np.float64)
        if S.shape != (d, d):
            raise ValueError(f"input_cov must have shape (d, d) = ({d}, {d}), got {S.shape}")
        if not np.isfinite(S).all():
            raise ValueError("input_cov holds NaN or Inf")
        if not np.allclose(S, S.T, rtol=1e-10, atol=1e-12):
            raise ValueError("input_cov must be symmetric (a covariance matrix)")
        try:
            L = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            lo = float(np.linalg.eigvalsh(S)[0])
            raise ValueError(f"input_cov must be positive definite; its smallest eigenvalue is {lo:.3g} "
                             "(a degenerate input lives in a subspace: project the weights onto it instead)") from None
    return mu, L


def whiten(network: Union[Teacher, Student], *, mean=None, cov=None, _checked: Optional[tuple] = None):
    """The network under ``Z ~ N(0, I_d)`` that computes the same function of ``X = mu + L Z``.

    Args:
      network: a :class:`Teacher` or :class:`Student` (any batch axes), weights ``(..., k, d)``.
      mean: the input mean ``mu``, ``(d,)``, or ``None`` (zero).
      cov: the input covariance ``Sigma``, ``(d, d)`` positive definite, or ``None`` (identity).

    Returns:
      The same type with weights ``w L`` (rows ``L' w_j``) and biases ``c + w . mu`` (biases appear when
      ``mean`` is given, even if ``network`` had none).

    Raises:
      ValueError: as :func:`check_inputs`.

    >>> import jax, jax.numpy as jnp, earnshaw as es
    >>> t = es.Teacher(b=jnp.ones(1), w=jnp.array([[1.0, 2.0]]))
    >>> w = es.whiten(t, mean=jnp.array([1.0, 1.0]), cov=jnp.array([[4.0, 0.0], [0.0, 1.0]]))
    >>> w.w.tolist(), w.bias.tolist()        # w . X = 2 Z_1 + 2 Z_2 + 3
    ([[2.0, 2.0]], [3.0])
    """
    is_teacher = isinstance(network, Teacher)
    if not (is_teacher or isinstance(network, Student)):
        raise TypeError(f"whiten takes an earnshaw.Teacher or Student, got {type(network).__name__}")
    W = network.w if is_teacher else network.theta
    mu, L = _checked if _checked is not None else check_inputs(mean, cov, W.shape[-1])
    bias = network.bias
    if L is not None:
        W2 = W @ jnp.asarray(L, W.dtype)
    else:
        W2 = W
    if mu is not None:
        shift = W @ jnp.asarray(mu, W.dtype)
        bias = shift if bias is None else bias + shift
    if is_teacher:
        return Teacher(b=network.b, w=W2, bias=bias)
    return Student(a=network.a, theta=W2, bias=bias)

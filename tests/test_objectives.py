"""Objectives passed as callables, and the float32 path.

A custom objective ``f(pot, teacher, student)`` is resolved wherever ``objective=`` is (solvers, node-wise
descent, the landscape); a float32 problem without x64 runs in float32.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es

D, K = 3, 2
# one gradient-descent program (erf, k = 2, d = 3, batch 3, these static settings) serves both GD tests
GD = dict(max_steps=200, save_every=20)


@pytest.fixture(autouse=True)
def x64():
    """float64 in every test here (the float32 test turns it off inside), whatever the session's default."""
    with jax.enable_x64(True):
        yield


def _twice_L(pot, teacher, student):
    """A custom objective: called as the named ones are, ``f(pot, teacher, student)``."""
    return 2.0 * es.population_loss(pot, teacher, student)


def test_callable_objective_gives_the_named_objectives_trajectory():
    """GD on the callable 2 L with step lr / 2 is GD on "L" with step lr: the same trajectory, step by step
    (so the callable is really the objective, not ignored for the default), with losses 2 L."""
    t = es.random_teacher(jax.random.key(0), d=D, k=K)
    s = es.random_student(jax.random.key(1), d=D, k=K, batch=3)
    named = es.gradient_descent("erf", t, s, lr=0.05, objective="L", **GD)
    custom = es.gradient_descent("erf", t, s, lr=0.025, objective=_twice_L, **GD)
    # "L" runs erf's hand-derived gradient, the callable autodiff: equal to rounding
    np.testing.assert_allclose(np.asarray(custom.params.theta), np.asarray(named.params.theta), atol=1e-11)
    np.testing.assert_allclose(np.asarray(custom.params.a), np.asarray(named.params.a), atol=1e-11)
    np.testing.assert_allclose(np.asarray(custom.losses), 2 * np.asarray(named.losses), rtol=1e-10)
    assert np.all(np.asarray(named.final_loss) < np.asarray(named.losses[:, 0]))  # it went somewhere
    assert np.abs(np.asarray(named.final.theta) - np.asarray(s.theta)).max() > 0.05
    # the landscape resolves it too: a Problem with the callable has twice the named Hessian
    H_named = es.hessian(es.Problem("erf", t), named.final)
    H_custom = es.hessian(es.Problem("erf", t, objective=_twice_L), named.final)
    np.testing.assert_allclose(np.asarray(H_custom), 2 * np.asarray(H_named), rtol=1e-9, atol=1e-12)


def test_nodewise_descent_with_a_callable_objective():
    """Node-wise descent runs a callable objective in full (the named ones through the terms of unit i
    alone): "L" and the callable 2 L at half the step learn the same units, with losses 2 L."""
    t = es.random_teacher(jax.random.key(0), d=D, k=K)
    key = jax.random.key(3)
    named = es.nodewise_descent(key, "erf", t, k=K, lr=0.05, max_steps=1000, objective="L")
    custom = es.nodewise_descent(key, "erf", t, k=K, lr=0.025, max_steps=1000, objective=_twice_L)
    np.testing.assert_allclose(np.asarray(custom.params.theta), np.asarray(named.params.theta), atol=1e-10)
    np.testing.assert_allclose(np.asarray(custom.params.a), np.asarray(named.params.a), atol=1e-10)
    np.testing.assert_allclose(np.asarray(custom.losses), 2 * np.asarray(named.losses), rtol=1e-10)
    assert float(named.losses[-1]) < 0.7 * float(named.losses[0])


def test_float32_run_without_x64_is_float32_and_close_to_float64():
    with jax.enable_x64(True):
        t64 = es.random_teacher(jax.random.key(0), d=D, k=K)
        s64 = es.random_student(jax.random.key(1), d=D, k=K, batch=3)
        ref = es.gradient_descent("erf", t64, s64, lr=0.05, **GD)
        ref_flow = es.gradient_flow("erf", t64, s64, t1=5.0, n_save=3)
    with jax.enable_x64(False):
        cast = lambda tree: jax.tree_util.tree_map(lambda v: jnp.asarray(np.asarray(v, np.float32)), tree)  # noqa
        t32, s32 = cast(t64), cast(s64)
        assert t32.w.dtype == jnp.float32
        gd = es.gradient_descent("erf", t32, s32, lr=0.05, **GD)
        assert gd.final.theta.dtype == jnp.float32 and gd.final.a.dtype == jnp.float32
        assert gd.final_loss.dtype == jnp.float32 and gd.losses.dtype == jnp.float32
        flow = es.gradient_flow("erf", t32, s32, t1=5.0, n_save=3)
        assert flow.final.theta.dtype == jnp.float32 and flow.final_loss.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(gd.final.theta), np.asarray(ref.final.theta), atol=2e-5)
    np.testing.assert_allclose(np.asarray(gd.final_loss), np.asarray(ref.final_loss), rtol=1e-4, atol=1e-6)
    # the flow's tolerances (rtol 1e-8) are below float32's resolution: it agrees to float32 rounding
    np.testing.assert_allclose(np.asarray(flow.final.theta), np.asarray(ref_flow.final.theta), atol=1e-4)
    np.testing.assert_allclose(np.asarray(flow.final_loss), np.asarray(ref_flow.final_loss), rtol=1e-3)
    # and they moved: the comparison is not of two starts
    assert np.abs(np.asarray(ref.final.theta) - np.asarray(s64.theta)).max() > 0.05

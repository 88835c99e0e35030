"""certify: interval-arithmetic (arb) proofs of critical points, their kind and index, checked independently."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es

TEACHER = es.Teacher(b=jnp.array([1.0, -0.5]), w=jnp.array([[1.0, 0.0], [0.3, 0.8]]))
# the soft committee machine on this teacher (charges fixed at b) has, besides its global minimum, a spurious
# local minimum and a saddle of index 1 near these points (found by Newton from random starts)
FIXED = es.Problem("erf", TEACHER, train="theta")
SPURIOUS = es.Student(a=TEACHER.b, theta=jnp.array([[0.169, -0.2805], [-1.6957, 0.0088]]))
SADDLE = es.Student(a=TEACHER.b, theta=jnp.array([[0.402, -0.1928], [-0.402, 0.1928]]))


def _polish(problem, point):
    p, gn = es.refine(problem, point, max_steps=50)
    assert float(gn) < 1e-12
    return p


def _independent_checks(problem, point, cert):
    """What the certificate claims, against float64 numbers computed apart from it."""
    x = np.asarray(problem.flatten(point))[np.asarray(problem.mask(problem.flatten(point))) > 0]
    assert np.all(np.abs(x - cert.center) <= cert.radius)  # the Newton point is in the certified box
    lo, hi = cert.loss_interval
    assert lo <= float(problem.value(point)) <= hi and hi - lo < 1e-8
    ev = np.asarray(es.spectrum(problem, point))
    assert int(np.sum(ev < 0)) == cert.index
    if cert.lambda_min_lower is not None:
        assert 0 < cert.lambda_min_lower <= ev[0] + 1e-12


def test_global_and_spurious_minima_are_certified():
    glob = es.Student(a=TEACHER.b, theta=TEACHER.w)
    for problem, point in ((es.Problem("erf", TEACHER), glob), (FIXED, _polish(FIXED, SPURIOUS))):
        cert = es.certify(problem, point)
        assert cert.certified and cert.kind == "strict local minimum" and cert.index == 0, cert.reason
        assert cert.radius < 1e-8
        _independent_checks(problem, point, cert)
    # the spurious minimum's loss is certified away from zero: it really is spurious
    cert = es.certify(FIXED, _polish(FIXED, SPURIOUS))
    assert cert.loss_interval[0] > 1e-3


def test_a_saddle_is_certified_as_a_saddle_not_a_minimum():
    point = _polish(FIXED, SADDLE)
    cert = es.certify(FIXED, point)
    assert cert.certified and cert.kind == "saddle" and cert.index == 1 and cert.lambda_min_lower is None
    _independent_checks(FIXED, point, cert)


def test_a_point_that_is_not_critical_is_refused():
    near = es.Student(a=TEACHER.b + 1e-3, theta=TEACHER.w - 1e-3)  # gradient ~1e-3: no critical point within 1e-4
    cert = es.certify("erf", TEACHER, near)
    assert not cert.certified and "Krawczyk" in cert.reason
    # a degenerate critical point (a = 0 makes the Hessian singular) is refused with the reason
    zero = es.Student(a=jnp.zeros(2), theta=jnp.zeros((2, 2)))
    cert = es.certify("erf", TEACHER, zero)
    assert not cert.certified and "singular" in cert.reason


def test_relu_minimum_away_from_parallel_units_and_the_kink_refused():
    """relu's potential is not twice differentiable where a student unit is parallel to a teacher unit: the
    global minimum sits there and is refused with that reason; arb, not float64 rounding, decides."""
    relu = es.Problem("relu", TEACHER, train="theta")
    cert = es.certify(relu, es.Student(a=TEACHER.b, theta=TEACHER.w))
    assert not cert.certified and "not twice differentiable" in cert.reason


def test_rounding_near_arcsin_one_is_handled():
    """At |theta| = 1e8 erf's self-term argument 2|u|^2 / (1 + 2|u|^2) is 1 - 5e-17, which float64 rounds to 1
    (arcsin's derivative infinite there); in arb it stays below 1, and value and derivatives are finite balls."""
    import flint
    from flint import arb

    from earnshaw.landscape.certify import _objective

    nu = 1e16
    assert 2 * nu / (1 + 2 * nu) == 1.0  # float64 cannot tell it from 1
    t = es.Teacher(b=jnp.array([1.0]), w=jnp.array([[1e8, 0.0]]))
    problem = es.Problem("erf", t)
    old = flint.ctx.prec
    flint.ctx.prec = 106
    try:
        hd = _objective(problem, [arb(1.0), arb(1e8), arb(0.0)], 1, 2)
    finally:
        flint.ctx.prec = old
    assert hd.v.is_finite() and hd.v.contains(0) and float(hd.v.rad()) < 1e-20  # the loss at the teacher: 0
    assert all(v.is_finite() for v in hd.g) and all(v.is_finite() for v in hd.h.ravel())
    # float64 derivatives there are not finite: the proof must not rest on them
    g64 = np.asarray(es.Problem("erf", t, gradient="autodiff").flat_grad(jnp.array([1.0, 1e8, 0.0])))
    assert not np.all(np.isfinite(g64))


def test_certify_rejects_what_it_cannot_evaluate():
    with pytest.raises(ValueError, match="certifiable: erf"):
        es.certify("tanh", TEACHER, es.Student(a=TEACHER.b, theta=TEACHER.w))
    with pytest.raises(ValueError, match="one point"):
        es.certify("erf", TEACHER, es.random_student(jax.random.key(0), d=2, k=2, batch=2))


@pytest.mark.parametrize("name", ["relu", "hermite3"])
def test_ball_derivatives_contain_float64_autodiff(name):
    """The chain rule over Gram triples (value, gradient, Hessian in balls) against JAX's float64 autodiff at a
    generic point, every coordinate trained: the balls must hold the float64 numbers to rounding."""
    import flint
    from flint import arb

    from earnshaw.landscape.certify import _objective

    rng = np.random.default_rng(1)
    k, d = 3, 4
    t = es.Teacher(b=jnp.array(rng.normal(size=2)), w=jnp.array(rng.normal(size=(2, d))))
    problem = es.Problem(es.potential(name), t)
    x = rng.normal(size=k * (d + 1))
    old = flint.ctx.prec
    flint.ctx.prec = 106
    try:
        hd = _objective(problem, [arb(float(v)) for v in x], k, d)
    finally:
        flint.ctx.prec = old
    xj = jnp.asarray(x)  # tests run in float64 (conftest)
    f, g = jax.jit(type(problem).flat_value_and_grad)(problem, xj)
    H = es.hessian(problem, problem.unflatten(xj))
    mid = lambda a: np.array([float(v.mid()) for v in np.ravel(a)])  # noqa: E731
    scale = 1 + np.abs(np.asarray(H)).max()
    assert abs(float(hd.v.mid()) - float(f)) < 1e-12 * scale
    np.testing.assert_allclose(mid(hd.g), np.asarray(g), atol=1e-11 * scale)
    np.testing.assert_allclose(mid(hd.h), np.asarray(H).ravel(), atol=1e-11 * scale)

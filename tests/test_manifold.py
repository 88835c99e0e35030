"""The sphere manifold and its Riemannian Hessian; perturbed GD at a saddle; callable objectives; float32.

On ``manifold="sphere"`` each ``theta_i`` lives on the unit sphere and the ``a_i`` in R: the product manifold
``R^k x (S^{d-1})^k``. Its geodesics are straight lines in ``a`` and great circles in each ``theta_i``, so the
Riemannian Hessian is checked against derivatives along great circles, not against a formula.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es
from earnshaw.dynamics import problem as P

D, K = 3, 2


def _unit(x):
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _geodesic(x, xi, t, k, d):
    """The point at time ``t`` on the geodesic from ``x`` with velocity ``xi`` (tangent at ``x``)."""
    s, v = P.unflatten(x, k, d), P.unflatten(xi, k, d)
    speed = jnp.linalg.norm(v.theta, axis=-1, keepdims=True)
    # sin(t speed) / speed, which is t for a unit that does not move
    sinc = jnp.where(speed > 0, jnp.sin(t * speed) / jnp.where(speed > 0, speed, 1.0), t)
    th = jnp.cos(t * speed) * s.theta + sinc * v.theta
    return P.flatten(es.Student(a=s.a + t * v.a, theta=th))


def _tangent_basis(x, k, d):
    """Orthonormal columns spanning the tangent space at ``x``: ``(k + k d, k + k (d - 1))``."""
    n = k + k * d
    P_full = jax.vmap(lambda e: P.tangent(e, x, k, d, "sphere"))(jnp.eye(n))  # the projection, row by row
    lam, vecs = np.linalg.eigh(np.asarray(P_full))
    return vecs[:, lam > 0.5]


def _problem(teacher, student, objective="L"):
    k, d = student.k, student.d
    f = P.make_objective(es.potential("erf"), teacher, k, d, objective)
    x = P.flatten(student)
    return f, x, k, d


def _riemannian(f, x, k, d):
    """The Riemannian Hessian at ``x`` and the Euclidean gradient (one compiled call: eagerly, 10 s more)."""
    @jax.jit
    def both(x):
        g = jax.grad(f)(x)
        return P.riemannian_hessian(jax.hessian(f)(x), g, x, k, d, "sphere"), g
    return both(x)


def _sphere_teacher(seed=0, k=K, d=D, norm=1.0):
    t = es.random_teacher(jax.random.key(seed), d=d, k=k)
    return es.Teacher(b=t.b, w=norm * _unit(t.w))


def _radial_part(g, x, k, d):
    gs, xs = P.unflatten(g, k, d), P.unflatten(x, k, d)
    return np.asarray(jnp.sum(gs.theta * xs.theta, -1))


def _constrained_critical_point():
    """A critical point on the sphere whose Euclidean gradient is not zero: one unit aligned with a teacher
    unit of norm 1.7 (off the sphere), with its optimal charge. By symmetry the theta-gradient is radial
    and the a-gradient is 0, so the Riemannian gradient vanishes while theta . grad_theta f does not."""
    t = es.Teacher(b=jnp.array([0.9]), w=jnp.array([[1.7 * 0.6, 1.7 * 0.8, 0.0]]))
    th = jnp.array([[0.6, 0.8, 0.0]])
    return t, es.Student(a=es.optimal_a("erf", th, t), theta=th)


def test_sphere_gd_keeps_every_unit_on_the_sphere_and_lowers_the_loss():
    t = _sphere_teacher()
    s = es.random_student(jax.random.key(1), d=D, k=K, batch=4)
    s = es.Student(a=s.a, theta=_unit(s.theta))
    traj = es.gradient_descent("erf", t, s, lr=0.05, steps=400, manifold="sphere", save_every=20)
    norms = np.linalg.norm(np.asarray(traj.params.theta), axis=-1)  # every saved point: (4, T, K)
    np.testing.assert_allclose(norms, 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(traj.final.theta), axis=-1), 1.0, atol=1e-12)
    assert np.all(np.asarray(traj.final_loss) < 0.5 * np.asarray(traj.losses[:, 0]))
    # the projection does something: unconstrained GD from the same start leaves the sphere
    free = es.gradient_descent("erf", t, s, lr=0.05, steps=400)
    assert np.abs(np.linalg.norm(np.asarray(free.final.theta), axis=-1) - 1.0).max() > 1e-2


@pytest.mark.parametrize("where", ["teacher", "constrained"])
def test_riemannian_hessian_is_the_derivative_of_the_riemannian_gradient_along_geodesics(where):
    """At a critical point, Hess f [xi] = d/dt grad_R f(gamma(t)) at t = 0 along the geodesic gamma with
    velocity xi, with grad_R f = P grad f (P the tangent projection)."""
    with jax.enable_x64(True):
        if where == "teacher":  # the global minimum, where even the Euclidean gradient vanishes
            t = _sphere_teacher()
            f, x, k, d = _problem(t, es.Student(a=t.b, theta=t.w))
        else:
            f, x, k, d = _problem(*_constrained_critical_point())
        H_R, g = _riemannian(f, x, k, d)
        grad_R = lambda y: P.tangent(jax.grad(f)(y), y, k, d, "sphere")  # noqa: E731
        along = jax.jit(lambda xi, t: grad_R(_geodesic(x, xi, t, k, d)))  # grad_R at gamma(t)
        np.testing.assert_allclose(grad_R(x), 0.0, atol=1e-12)  # a critical point on the sphere
        if where == "constrained":  # ... where the sphere's curvature term -(theta . grad f) matters
            assert np.abs(_radial_part(g, x, k, d)).min() > 1e-2
        Q = _tangent_basis(x, k, d)
        # the Hessian with the tangent gradient in place of the Euclidean one: no curvature term
        wrong = P.riemannian_hessian(jax.jit(jax.hessian(f))(x), P.tangent(g, x, k, d, "sphere"), x, k, d, "sphere")
        h = 1e-5
        for xi in (Q @ np.random.default_rng(0).normal(size=(Q.shape[1], 4))).T:
            fd = (along(xi, h) - along(xi, -h)) / (2 * h)
            np.testing.assert_allclose(H_R @ xi, fd, atol=1e-8)
            if where == "constrained":  # the test sees the curvature term: the projected Euclidean Hessian fails
                assert np.abs(wrong @ xi - fd).max() > 1e-3


@pytest.mark.parametrize("where", ["teacher", "constrained", "random"])
def test_tangent_eigenvalues_are_second_derivatives_along_geodesics(where):
    """For an eigenpair (lam, v) of the Riemannian Hessian on the tangent space, f(gamma(t)) along the
    geodesic with velocity v has second derivative lam at t = 0 (at any point: a geodesic has no
    acceleration, so the gradient term drops out; "random" is a point that is not critical)."""
    with jax.enable_x64(True):
        if where == "teacher":
            t = _sphere_teacher()
            f, x, k, d = _problem(t, es.Student(a=t.b, theta=t.w))
        elif where == "constrained":
            f, x, k, d = _problem(*_constrained_critical_point())
        else:
            s = es.random_student(jax.random.key(3), d=D, k=K)
            f, x, k, d = _problem(_sphere_teacher(norm=1.4), es.Student(a=s.a, theta=_unit(s.theta)))
        H_R, g = _riemannian(f, x, k, d)
        Q = _tangent_basis(x, k, d)
        lam, Y = np.linalg.eigh(Q.T @ np.asarray(H_R) @ Q)
        # normal directions (theta_i itself) are mapped to 0 and the tangent space is invariant
        np.testing.assert_allclose(np.asarray(H_R) @ (np.eye(len(x)) - Q @ Q.T), 0.0, atol=1e-12)
        h = 1e-4
        curve = jax.jit(jax.vmap(lambda v, s: f(_geodesic(x, v, s, k, d)), in_axes=(None, 0)))
        for lam_i, v in zip(lam, (Q @ Y).T):
            fm, f0, fp = np.asarray(curve(v, jnp.array([-h, 0.0, h])))
            assert (fp - 2 * f0 + fm) / h**2 == pytest.approx(lam_i, abs=1e-6), (where, lam)
        if where == "teacher":  # a global minimum: no negative curvature
            assert lam[0] > -1e-10


def test_perturbed_gd_leaves_the_strict_saddle_that_gd_cannot():
    """For erf (odd), a = 0, theta = 0 has gradient exactly 0 and a negative Hessian eigenvalue (see
    hessian_descent's docstring): plain GD stays there, perturbed GD kicks off it and descends."""
    t = es.random_teacher(jax.random.key(0), d=D, k=K)
    z = es.Student(a=jnp.zeros((4, K)), theta=jnp.zeros((4, K, D)))
    lam = np.asarray(es.spectrum("erf", t, z))
    assert np.all(lam[:, 0] < -0.5)  # a strict saddle
    loss0 = float(es.population_loss("erf", es.Student(a=z.a[0], theta=z.theta[0]), t))
    gd = es.gradient_descent("erf", t, z, lr=0.1, steps=1000)
    np.testing.assert_array_equal(np.asarray(P.flatten(gd.final)), 0.0)
    np.testing.assert_allclose(np.asarray(gd.final_loss), loss0, rtol=1e-14)
    pgd = es.perturbed_gd("erf", t, z, jax.random.key(7), lr=0.1, steps=1000, g_thres=1e-3, radius=1e-2,
                          t_thres=50)
    assert np.all(np.asarray(pgd.final_loss) < loss0 - 0.05)
    # one key, split per problem: four different escapes
    assert len({np.asarray(pgd.final.theta[i]).round(6).tobytes() for i in range(4)}) == 4


# A custom objective receives the same arguments as the named losses (whatever their order), so forwarding
# them is order-agnostic.
def _twice_L(pot, *args):
    return 2.0 * es.population_loss(pot, *args)


def test_callable_objective_gives_the_named_objectives_trajectory():
    """GD on the callable 2 L with step lr / 2 is GD on "L" with step lr: the same trajectory, step by step
    (so the callable is really the objective, not ignored for the default), with losses 2 L."""
    t = es.random_teacher(jax.random.key(0), d=D, k=K)
    s = es.random_student(jax.random.key(1), d=D, k=K, batch=3)
    named = es.gradient_descent("erf", t, s, lr=0.05, steps=200, save_every=20, objective="L")
    custom = es.gradient_descent("erf", t, s, lr=0.025, steps=200, save_every=20, objective=_twice_L)
    # "L" runs erf's hand-derived gradient, the callable autodiff: equal to rounding
    np.testing.assert_allclose(np.asarray(custom.params.theta), np.asarray(named.params.theta), atol=1e-11)
    np.testing.assert_allclose(np.asarray(custom.params.a), np.asarray(named.params.a), atol=1e-11)
    np.testing.assert_allclose(np.asarray(custom.losses), 2 * np.asarray(named.losses), rtol=1e-10)
    assert np.all(np.asarray(named.final_loss) < np.asarray(named.losses[:, 0]))  # it went somewhere
    assert np.abs(np.asarray(named.final.theta) - np.asarray(s.theta)).max() > 0.05


def test_nodewise_descent_with_a_callable_objective():
    """Node-wise descent runs a callable objective in full (the named ones through the terms of unit i
    alone): "L" and the callable 2 L at half the step learn the same units, with losses 2 L."""
    t = es.random_teacher(jax.random.key(0), d=D, k=K)
    kw = dict(k=K, node_steps=1000, key=jax.random.key(3))
    named = es.nodewise_descent("erf", t, lr=0.05, objective="L", **kw)
    custom = es.nodewise_descent("erf", t, lr=0.025, objective=_twice_L, **kw)
    np.testing.assert_allclose(np.asarray(custom.params.theta), np.asarray(named.params.theta), atol=1e-10)
    np.testing.assert_allclose(np.asarray(custom.params.a), np.asarray(named.params.a), atol=1e-10)
    np.testing.assert_allclose(np.asarray(custom.losses), 2 * np.asarray(named.losses), rtol=1e-10)
    assert float(named.losses[-1]) < 0.7 * float(named.losses[0])


def test_float32_run_without_x64_is_float32_and_close_to_float64():
    with jax.enable_x64(True):
        t64 = es.random_teacher(jax.random.key(0), d=D, k=K)
        s64 = es.random_student(jax.random.key(1), d=D, k=K, batch=3)
        ref = es.gradient_descent("erf", t64, s64, lr=0.05, steps=300)
    with jax.enable_x64(False):
        cast = lambda tree: jax.tree_util.tree_map(lambda v: jnp.asarray(np.asarray(v, np.float32)), tree)  # noqa
        t32, s32 = cast(t64), cast(s64)
        assert t32.w.dtype == jnp.float32
        gd = es.gradient_descent("erf", t32, s32, lr=0.05, steps=300)
        assert gd.final.theta.dtype == jnp.float32 and gd.final.a.dtype == jnp.float32
        assert gd.final_loss.dtype == jnp.float32 and gd.losses.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(gd.final.theta), np.asarray(ref.final.theta), atol=2e-5)
    np.testing.assert_allclose(np.asarray(gd.final_loss), np.asarray(ref.final_loss), rtol=1e-4, atol=1e-6)
    # and they moved: the comparison is not of two starts
    assert np.abs(np.asarray(ref.final.theta) - np.asarray(s64.theta)).max() > 0.05

"""The sphere manifold and its Riemannian Hessian; perturbed GD at a saddle (callable objectives and the float32
path: tests/test_objectives.py).

On ``manifold="sphere"`` each ``theta_i`` lives on the unit sphere and the ``a_i`` in R: the product manifold
``R^k x (S^{d-1})^k``. Its geodesics are straight lines in ``a`` and great circles in each ``theta_i``, so the
Riemannian Hessian is checked against derivatives along great circles, not against a formula.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es

D, K = 3, 2
GD = dict(max_steps=200, save_every=20)


@pytest.fixture(autouse=True)
def x64():
    """float64 in every test here (the float32 test turns it off inside), whatever the session's default."""
    with jax.enable_x64(True):
        yield


def _unit(x):
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _geodesic(problem, x, xi, t):
    """The point at time ``t`` on the geodesic from ``x`` with velocity ``xi`` (tangent at ``x``)."""
    s, v = problem.unflatten(x), problem.unflatten(xi)
    speed = jnp.linalg.norm(v.theta, axis=-1, keepdims=True)
    # sin(t speed) / speed, which is t for a unit that does not move
    sinc = jnp.where(speed > 0, jnp.sin(t * speed) / jnp.where(speed > 0, speed, 1.0), t)
    th = jnp.cos(t * speed) * s.theta + sinc * v.theta
    return problem.flatten(es.Student(a=s.a + t * v.a, theta=th))


def _tangent_basis(problem, x):
    """Orthonormal columns spanning the tangent space at ``x``: ``(k + k d, k + k (d - 1))``."""
    P_full = jax.vmap(lambda e: problem.tangent(e, x))(jnp.eye(x.shape[-1]))  # the projection, row by row
    lam, vecs = np.linalg.eigh(np.asarray(P_full))
    return vecs[:, lam > 0.5]


# Compiled once per kind of problem (a Problem is a pytree: its teacher is an argument, the rest static).
@jax.jit
def _derivatives(problem, x):
    """At ``x``: the Euclidean gradient and Hessian, and the Riemannian Hessian of the sphere."""
    g, H = problem.flat_grad(x), problem.flat_hessian(x)
    return g, H, problem.riemannian_hessian(H, g, x)


@jax.jit
def _along(problem, x, xi, ts):
    """The value and Riemannian gradient at the points ``gamma(ts)`` of the geodesic with velocity ``xi``."""
    def at(t):
        y = _geodesic(problem, x, xi, t)
        return problem.f(y), problem.tangent(problem.flat_grad(y), y)
    return jax.vmap(at)(ts)


def _sphere_teacher(seed=0, k=K, d=D, norm=1.0):
    t = es.random_teacher(jax.random.key(seed), d=d, k=k)
    return es.Teacher(b=t.b, w=norm * _unit(t.w))


def _radial_part(problem, g, x):
    gs, xs = problem.unflatten(g), problem.unflatten(x)
    return np.asarray(jnp.sum(gs.theta * xs.theta, -1))


def _constrained_critical_point():
    """A critical point on the sphere whose Euclidean gradient is not zero: one unit aligned with a teacher
    unit of norm 1.7 (off the sphere), with its optimal charge. By symmetry the theta-gradient is radial
    and the a-gradient is 0, so the Riemannian gradient vanishes while theta . grad_theta f does not."""
    t = es.Teacher(b=jnp.array([0.9]), w=jnp.array([[1.7 * 0.6, 1.7 * 0.8, 0.0]]))
    th = jnp.array([[0.6, 0.8, 0.0]])
    return t, es.Student(a=es.optimal_a("erf", t, th), theta=th)


def test_sphere_gd_keeps_every_unit_on_the_sphere_and_lowers_the_loss():
    t = _sphere_teacher()
    s = es.random_student(jax.random.key(1), d=D, k=K, batch=4)
    s = es.Student(a=s.a, theta=_unit(s.theta))
    traj = es.gradient_descent("erf", t, s, lr=0.05, max_steps=400, manifold="sphere", save_every=20)
    norms = np.linalg.norm(np.asarray(traj.params.theta), axis=-1)  # every saved point: (4, T, K)
    np.testing.assert_allclose(norms, 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(traj.final.theta), axis=-1), 1.0, atol=1e-12)
    assert np.all(np.asarray(traj.final_loss) < 0.5 * np.asarray(traj.losses[:, 0]))
    # the units moved (on the sphere)
    assert np.abs(np.asarray(traj.final.theta) - np.asarray(s.theta)).max() > 0.1


def _point(where):
    """``(problem, student)`` on the sphere: the teacher itself (the global minimum, where even the Euclidean
    gradient vanishes); a constrained critical point (see above); a random point (not critical)."""
    if where == "teacher":
        t = _sphere_teacher()
        return es.Problem("erf", t, manifold="sphere"), es.Student(a=t.b, theta=t.w)
    if where == "constrained":
        t, s = _constrained_critical_point()
        return es.Problem("erf", t, manifold="sphere"), s
    s = es.random_student(jax.random.key(3), d=D, k=K)
    return es.Problem("erf", _sphere_teacher(norm=1.4), manifold="sphere"), es.Student(a=s.a, theta=_unit(s.theta))


@pytest.mark.parametrize("where", ["teacher", "constrained", "random"])
def test_riemannian_hessian_against_derivatives_along_geodesics(where):
    """(1) For an eigenpair (lam, v) of the Riemannian Hessian on the tangent space, f(gamma(t)) along the
    geodesic with velocity v has second derivative lam at t = 0 (at any point: a geodesic has no acceleration,
    so the gradient term drops out). (2) At a critical point, Hess f [xi] = d/dt grad_R f(gamma(t)) at t = 0,
    with grad_R f = P grad f (P the tangent projection)."""
    problem, student = _point(where)
    x = problem.flatten(student)
    g, H, H_R = map(np.asarray, _derivatives(problem, x))
    # the public functions give the same Hessian, and its spectrum on the tangent space
    np.testing.assert_allclose(np.asarray(es.hessian(problem, student)), H_R, atol=1e-12)
    Q = _tangent_basis(problem, x)
    # normal directions (theta_i itself) are mapped to 0, and the tangent space to itself
    np.testing.assert_allclose(H_R @ (np.eye(len(x)) - Q @ Q.T), 0.0, atol=1e-12)
    lam, Y = np.linalg.eigh(Q.T @ H_R @ Q)
    np.testing.assert_allclose(np.asarray(es.spectrum(problem, student)), lam, atol=1e-10)
    h = 1e-4  # second differences: rounding ~1e-16 / h^2
    ts = jnp.array([-h, 0.0, h])  # one shape of ts, one program
    for lam_i, v in zip(lam, (Q @ Y).T):
        (fm, f0, fp), _ = _along(problem, x, v, ts)
        assert (fp - 2 * f0 + fm) / h**2 == pytest.approx(lam_i, abs=1e-6), (where, lam)
    if where == "teacher":  # a global minimum: no negative curvature
        assert lam[0] > -1e-10
    if where == "random":
        return
    _, grad_R = _along(problem, x, Q[:, 0], ts)
    np.testing.assert_allclose(grad_R[1], 0.0, atol=1e-12)  # a critical point on the sphere
    # the Hessian with the tangent gradient in place of the Euclidean one: without the curvature term
    wrong = np.asarray(problem.riemannian_hessian(H, problem.tangent(g, x), x))
    if where == "constrained":  # ... which matters here: theta . grad_theta f is not 0
        assert np.abs(_radial_part(problem, g, x)).min() > 1e-2
    h = 1e-5  # first differences
    for xi in (Q @ np.random.default_rng(0).normal(size=(Q.shape[1], 4))).T:
        _, (gm, _, gp) = _along(problem, x, xi, jnp.array([-h, 0.0, h]))
        fd = (gp - gm) / (2 * h)
        np.testing.assert_allclose(H_R @ xi, fd, atol=1e-8)
        if where == "constrained":  # the check sees the curvature term: the formula without it fails
            assert np.abs(wrong @ xi - fd).max() > 1e-3


def test_hessian_descent_on_the_sphere_stops_at_a_constrained_minimum():
    """Two hermite3 units on the line of a teacher unit of norm 1.5, theta_1 = e_1, theta_2 = -e_1 with
    charges +-a*/2: a critical point on the sphere whose Euclidean gradient is radial (-19 and +19) and whose
    Riemannian Hessian is PSD, a local minimum on the sphere. Hessian descent must stop there, not climb."""
    pot = es.potential("hermite3")
    t = es.Teacher(b=jnp.array([1.0]), w=jnp.array([[1.5, 0.0, 0.0]]))
    a_star = es.optimal_a(pot, t, jnp.array([[1.0, 0.0, 0.0]]))[0]
    s = es.Student(a=jnp.array([0.5, -0.5]) * a_star, theta=jnp.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))
    problem = es.Problem(pot, t, manifold="sphere")
    x = problem.flatten(s)
    g, _, H_R = _derivatives(problem, x)
    np.testing.assert_allclose(problem.tangent(g, x), 0.0, atol=1e-12)
    assert np.abs(_radial_part(problem, g, x)).min() > 10.0
    assert np.linalg.eigvalsh(np.asarray(H_R))[0] > -1e-9  # no negative curvature on the sphere
    traj = es.hessian_descent(problem, s, lr=1e-3, max_steps=5, gamma=1e-6, save_every=1)
    assert np.all(np.diff(np.asarray(traj.losses)) <= 1e-12), f"HD climbed: losses {traj.losses}"
    assert str(traj.status_names()) == "converged"
    np.testing.assert_allclose(problem.flatten(traj.final), x, atol=1e-12)


def test_perturbed_gd_leaves_the_strict_saddle_that_gd_cannot():
    """For erf (odd), a = 0, theta = 0 has gradient exactly 0 and a negative Hessian eigenvalue (see
    hessian_descent's docstring): plain GD stays there, perturbed GD kicks off it and descends."""
    t = es.random_teacher(jax.random.key(0), d=D, k=K)
    z = es.Student(a=jnp.zeros((3, K)), theta=jnp.zeros((3, K, D)))
    g, H, _ = _derivatives(es.Problem("erf", t), jnp.zeros(K + K * D))
    np.testing.assert_array_equal(g, 0.0)
    assert np.linalg.eigvalsh(np.asarray(H))[0] < -0.5  # a strict saddle
    loss0 = float(es.population_loss("erf", t, es.Student(a=z.a[0], theta=z.theta[0])))
    gd = es.gradient_descent("erf", t, z, lr=0.1, **GD)
    np.testing.assert_array_equal(np.asarray(gd.final.a), 0.0)
    np.testing.assert_array_equal(np.asarray(gd.final.theta), 0.0)
    np.testing.assert_allclose(np.asarray(gd.final_loss), loss0, rtol=1e-14)
    pgd = es.perturbed_gd(jax.random.key(7), "erf", t, z, lr=0.1, g_thres=1e-3, radius=1e-2, t_thres=50, **GD)
    assert np.all(np.asarray(pgd.final_loss) < loss0 - 0.05)
    # one key, split per problem: three different escapes
    assert len({np.asarray(pgd.final.theta[i]).round(6).tobytes() for i in range(3)}) == 3

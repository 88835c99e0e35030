"""Hot-path numerics: the fast float64 arcsin and the hand-derived erf gradient against autodiff."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es
from earnshaw.closed_form import has_closed_form
from earnshaw.potentials._fastmath import asin


def test_fast_asin_is_within_an_ulp_of_a_40_digit_reference():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    rng = np.random.default_rng(0)
    # everywhere, and densely around the branch switches at 1/2 and 0.975
    x = np.concatenate([rng.uniform(-1, 1, 3000), rng.uniform(0.45, 0.55, 1000), rng.uniform(0.96, 1.0, 1000),
                        [0.5, -0.5, np.nextafter(0.5, 1), 0.975, 1.0, -1.0, 1e-300, 0.0]])
    ref = np.array([float(mpmath.asin(mpmath.mpf(float(v)))) for v in x])
    ours = np.asarray(asin(jnp.asarray(x)))
    assert np.all(np.abs(ours - ref) <= np.spacing(np.abs(ref)))
    # and against libm on a fine grid (each within an ulp of the truth: <= 2 ulp apart)
    g = np.linspace(-1.0, 1.0, 200_001)
    assert np.all(np.abs(np.asarray(asin(jnp.asarray(g))) - np.arcsin(g)) <= 2 * np.spacing(np.abs(np.arcsin(g))))
    assert np.isnan(np.asarray(asin(jnp.array([1.0 + 1e-12, -1.5])))).all()
    assert np.signbit(np.asarray(asin(jnp.asarray(-0.0))))


def test_fast_asin_economized_polynomial_keeps_its_stated_error_bound():
    """The degree-12 polynomial replacing the 23-term Taylor series, against (arcsin(y) / y - 1) / y^2 to 40 digits:
    within its Chebyshev-tail bound plus the float64 rounding of Horner's rule."""
    mpmath = pytest.importorskip("mpmath")
    from earnshaw.potentials._fastmath import _TAIL, _TAIL_ERROR, _tail

    mpmath.mp.dps = 40
    assert len(_TAIL) == 13 and _TAIL_ERROR < 2e-17
    z = np.concatenate([np.linspace(1e-6, 0.25, 400), [0.25]])
    ref = np.array([float((mpmath.asin(mpmath.sqrt(mpmath.mpf(v))) / mpmath.sqrt(mpmath.mpf(v)) - 1) / mpmath.mpf(v))
                    for v in z])
    err = np.abs(np.asarray(_tail(jnp.asarray(z))) - ref)
    assert err.max() <= _TAIL_ERROR + 4 * np.finfo(float).eps * ref.max(), err.max()


def test_fast_asin_derivatives_are_exact():
    x = jnp.linspace(-0.99, 0.99, 101)
    d1 = jax.vmap(jax.grad(asin))(x)
    np.testing.assert_allclose(d1, 1.0 / np.sqrt(1.0 - np.asarray(x) ** 2), rtol=1e-14)
    d2 = jax.vmap(jax.grad(jax.grad(asin)))(x)
    np.testing.assert_allclose(d2, np.asarray(x) / (1.0 - np.asarray(x) ** 2) ** 1.5, rtol=1e-12)
    # and the polynomial itself agrees with its derivative rule (central differences)
    h = 1e-6
    fd = (np.asarray(asin(x + h)) - np.asarray(asin(x - h))) / (2 * h)
    np.testing.assert_allclose(fd, d1, rtol=1e-8)


def _problems(k, d, n, key, m=None):
    k1, k2, k3 = jax.random.split(key, 3)
    t = es.random_teacher(k1, d, k if m is None else m, batch=n)
    s = es.random_student(k2, d, k, batch=n)
    # degenerate points: a zero unit, a unit on a proton, two coincident units
    th = s.theta.at[0, 0].set(0.0).at[1, 0].set(t.w[1, t.w.shape[-2] - 1])
    if k >= 2:
        th = th.at[2, 1].set(th[2, 0])
    return t, es.Student(a=s.a, theta=th)


@pytest.mark.parametrize("objective", ["L", "G", "reduced"])
@pytest.mark.parametrize("k,d,m", [(1, 1, 1), (3, 4, 3), (6, 2, 6), (1, 2, 2), (3, 2, 1), (2, 5, 4)])
def test_erf_closed_form_gradient_equals_autodiff(objective, k, d, m):
    """Student width k, teacher width m (over- and under-parameterised too), dimension d."""
    t, s = _problems(k, d, 5, jax.random.key(k * 10 + d), m=m)
    pot = es.potential("erf")

    @jax.jit
    @jax.vmap
    def both(ti, x):  # one compiled call for the five problems (eager dispatch of each op is the slow part)
        cf, ad = es.Problem(pot, ti, objective, gradient="closed_form"), es.Problem(pot, ti, objective, gradient="autodiff")
        return cf.flat_grad(x), ad.flat_grad(x), cf.flat_value_and_grad(x), ad.f(x)

    g_cf, g_ad, (v_vg, g_vg), v_ref = both(t, es.Problem(pot, t).flatten(s))
    assert g_cf.shape == (5, k * (d + 1))
    np.testing.assert_allclose(g_cf, g_ad, rtol=1e-12, atol=1e-13)
    # the value from the gradient's Gram matrices is the objective's, and the gradient beside it the same
    np.testing.assert_allclose(v_vg, v_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(g_vg, g_cf, rtol=1e-14, atol=1e-15)


def test_erf_closed_form_gradient_matches_finite_differences():
    t, s = _problems(3, 3, 1, jax.random.key(3))
    ti, si = es.Teacher(b=t.b[0], w=t.w[0]), es.Student(a=s.a[0], theta=s.theta[0])
    pot = es.potential("erf")
    problem = es.Problem(pot, ti, "L", gradient="closed_form")
    x = problem.flatten(si)
    g = np.asarray(problem.flat_grad(x))
    f = problem.f
    h = 1e-6
    fd = np.array([(f(x.at[j].add(h)) - f(x.at[j].add(-h))) / (2 * h) for j in range(x.size)])
    np.testing.assert_allclose(g, fd, atol=1e-8)


def test_solvers_give_the_same_answer_with_either_gradient():
    t = es.random_teacher(jax.random.key(0), d=4, k=3)
    s = es.random_student(jax.random.key(1), d=4, k=3, batch=4)
    runs = {g: es.gradient_descent("erf", t, s, lr=0.05, max_steps=500, grad=g) for g in ("autodiff", "closed_form")}
    flat = es.Problem("erf", t).flatten
    np.testing.assert_allclose(flat(runs["autodiff"].final), flat(runs["closed_form"].final), atol=1e-11)
    np.testing.assert_allclose(runs["autodiff"].losses, runs["closed_form"].losses, atol=1e-12)
    flows = {g: es.gradient_flow("erf", t, s, t1=50.0, grad=g, n_save=5) for g in ("autodiff", "closed_form")}
    np.testing.assert_allclose(flat(flows["autodiff"].final), flat(flows["closed_form"].final), atol=1e-9)


def test_gradient_choice_is_validated():
    t = es.random_teacher(jax.random.key(0), d=2, k=2)
    s = es.random_student(jax.random.key(1), d=2, k=2)
    assert has_closed_form(es.potential("erf"), "L") and has_closed_form(es.potential("relu"), "L")
    assert not has_closed_form(es.potential("sign"), "L")
    with pytest.raises(ValueError, match="autodiff"):
        es.gradient_descent("sign", t, s, max_steps=2, grad="closed_form")
    with pytest.raises(ValueError, match="valid: auto, autodiff, closed_form"):
        es.gradient_flow("erf", t, s, t1=1.0, grad="analytic")
    # auto falls back to autodiff where no closed form is known
    assert np.isfinite(float(es.gradient_descent("sign", t, s, max_steps=5, grad="auto").final_loss))


@pytest.mark.parametrize("objective", ["L", "G", "reduced"])
@pytest.mark.parametrize("k,d,m", [(3, 4, 3), (3, 2, 1), (2, 5, 4)])
def test_erf_hessian_from_closed_form_gradient_equals_autodiff(objective, k, d, m):
    """es.hessian, analyze and the second-order methods take erf's Hessian as the forward-mode Jacobian of
    the closed-form gradient; it must equal jax.hessian of the objective, and be symmetric."""
    t, s = _problems(k, d, 5, jax.random.key(k * 7 + d), m=m)
    pot = es.potential("erf")
    assert has_closed_form(pot, objective)

    @jax.jit
    @jax.vmap
    def both(ti, x):
        problem = es.Problem(pot, ti, objective)
        return problem.flat_hessian(x), jax.hessian(problem.replace(gradient="autodiff").f)(x)

    H, ref = map(np.asarray, both(t, es.Problem(pot, t).flatten(s)))
    assert H.shape == (5, k * (d + 1), k * (d + 1))
    np.testing.assert_allclose(H, ref, rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(H, H.transpose(0, 2, 1), atol=1e-12)


@pytest.mark.parametrize("name,objective,shapes", [("tanh", "L", ((3, 4, 2), (2, 3, 4))), ("tanh", "G", ((3, 4, 2),)),
                                                    ("sigmoid_pm1", "reduced", ((3, 4, 2),)),
                                                    ("softplus", "L", ((2, 3, 4),))])
def test_table_gradient_from_partials_equals_autodiff(name, objective, shapes):
    """The fast tables' hand-written gradient (Phi and its partials in |u|^2 and u.v from one pass of the series,
    assembled as forces) against jax.grad of the same objective, at degenerate points too; the value beside it is
    the objective's. Over-parameterised (k > m) and under-parameterised (k < m) students; an activation of
    no parity (softplus: every degree) and odd ones."""
    pot = es.potential(name)
    assert has_closed_form(pot, objective) and not has_closed_form(es.potential(name, method="quadrature"), objective)
    for k, d, m in shapes:
        t, s = _problems(k, d, 4, jax.random.key(k + 10 * d), m=m)

        @jax.jit
        @jax.vmap
        def both(ti, x):
            cf, ad = es.Problem(pot, ti, objective), es.Problem(pot, ti, objective, gradient="autodiff")
            assert cf.closed_form and not ad.closed_form
            return cf.flat_grad(x), ad.flat_grad(x), cf.flat_value_and_grad(x), ad.f(x)

        g_cf, g_ad, (v_vg, g_vg), v_ref = both(t, es.Problem(pot, t).flatten(s))
        # to the series' tolerance: the two evaluate different groups of pairs, and a batch's truncation is
        # decided per group of pairs, so they may stop at different (certified) lengths
        np.testing.assert_allclose(g_cf, g_ad, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(v_vg, v_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g_vg, g_cf, rtol=1e-14, atol=1e-15)


def test_table_partials_match_finite_differences_and_gd_agrees_with_autodiff():
    from earnshaw.potentials import fast

    pot = es.potential("tanh")
    table = pot.grams_fn.args[1]
    U = jax.random.normal(jax.random.key(0), (3, 4)) * 0.6
    W = jax.random.normal(jax.random.key(1), (2, 4)) * 0.6
    G, G_nu, G_c = pot.partials_fn(U, W)
    V = jnp.concatenate([U, W])
    assert G.shape == G_nu.shape == G_c.shape == (3, 5)
    np.testing.assert_allclose(G, pot.grams((U, V), ((0, 1),))[0], atol=1e-13)
    phi = lambda nu, c, nv: fast.fast_potential_fn(jnp.tanh, table, nu, c, nv)  # noqa: E731
    h = 1e-5
    for i, j in ((0, 1), (2, 3), (1, 4)):
        nu, c, nv = U[i] @ U[i], U[i] @ V[j], V[j] @ V[j]
        assert abs(G_nu[i, j] - (phi(nu + h, c, nv) - phi(nu - h, c, nv)) / (2 * h)) < 1e-9
        assert abs(G_c[i, j] - (phi(nu, c + h, nv) - phi(nu, c - h, nv)) / (2 * h)) < 1e-9
    # the diagonal: Phi(u, u), its derivative in |u|^2 with both arguments moving, and 0
    own = lambda nu: pot.self_gram(jnp.sqrt(nu) * U[:1] / jnp.linalg.norm(U[0]))[0, 0]  # noqa: E731
    nu0 = U[0] @ U[0]
    assert abs(G[0, 0] - own(nu0)) < 1e-13 and G_c[0, 0] == 0.0
    assert abs(G_nu[0, 0] - (own(nu0 + h) - own(nu0 - h)) / (2 * h)) < 1e-9
    # a solver on either gradient walks the same path
    t = es.random_teacher(jax.random.key(2), d=4, k=2)
    s = es.random_student(jax.random.key(3), d=4, k=3, batch=3)
    runs = {g: es.gradient_descent(pot, t, s, lr=0.05, max_steps=200, grad=g) for g in ("autodiff", "closed_form")}
    flat = es.Problem(pot, t).flatten
    np.testing.assert_allclose(flat(runs["autodiff"].final), flat(runs["closed_form"].final), atol=1e-11)
    np.testing.assert_allclose(runs["autodiff"].losses, runs["closed_form"].losses, atol=1e-12)

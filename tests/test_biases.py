"""Biased units and N(mu, Sigma) inputs: the bivariate normal CDF, biased potentials three ways (closed form,
quadrature, Monte Carlo) with exact derivatives, the bias -> 0 limit, the input map against correlated samples,
training, and the errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import ndtr

import earnshaw as es
from earnshaw.potentials.biased import gauss_hermite_biased
from earnshaw.potentials.bvn import bvn_cdf

CLOSED = ("relu", "step", "sign", "erf", "normal_cdf")
SMOOTH = ("erf", "normal_cdf")


def _bvn_reference(h, k, rho):
    """``P(X <= h, Y <= k)`` as the integral of ``phi(x) Phi((k - rho x) / r)`` over ``x <= h`` (scipy)."""
    r = math.sqrt(1.0 - rho * rho)
    f = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi) * ndtr((k - rho * x) / r)  # noqa: E731
    return integrate.quad(f, -40.0, h, epsabs=1e-15, epsrel=1e-14, limit=400, points=[min(h, k / rho if rho else 0)]
                          if -40 < min(h, k / rho if rho else 0) < h else None)[0]


def test_bvn_cdf_against_quadrature_and_at_unit_correlation():
    rng = np.random.default_rng(0)
    rhos = np.repeat([-0.999, -0.95, -0.926, -0.924, -0.6, -0.1, 0.0, 0.3, 0.74, 0.76, 0.924, 0.926, 0.99, 0.99999], 3)
    hk = 2.0 * rng.normal(size=(len(rhos), 2))
    ours = np.asarray(jax.jit(bvn_cdf)(hk[:, 0], hk[:, 1], rhos))
    ref = np.array([_bvn_reference(h, k, r) for (h, k), r in zip(hk, rhos)])
    assert np.abs(ours - ref).max() < 1e-12
    for h, k in ((0.3, -0.4), (-1.2, 0.5), (0.7, 0.7)):
        assert abs(float(bvn_cdf(h, k, 1.0)) - ndtr(min(h, k))) < 1e-15
        assert abs(float(bvn_cdf(h, k, -1.0)) - max(0.0, ndtr(h) - ndtr(-k))) < 1e-15


def test_bvn_cdf_derivatives_are_exact():
    args = (0.3, -0.4, 0.7)
    eps = 1e-5
    F = jax.jit(bvn_cdf)
    G = jax.jit(jax.grad(bvn_cdf, argnums=(0, 1, 2)))
    g = np.array(G(*args))
    H = np.array(jax.jit(jax.hessian(bvn_cdf, argnums=(0, 1, 2)))(*args))
    for i in range(3):
        up = list(args)
        dn = list(args)
        up[i] += eps
        dn[i] -= eps
        assert abs((float(F(*up)) - float(F(*dn))) / (2 * eps) - g[i]) < 1e-9
        assert np.abs((np.array(G(*up)) - np.array(G(*dn))) / (2 * eps) - H[i]).max() < 1e-8
    # d/drho is the bivariate density
    h, k, rho = args
    dens = math.exp(-(h * h - 2 * rho * h * k + k * k) / (2 * (1 - rho * rho))) / (2 * math.pi * math.sqrt(1 - rho**2))
    assert abs(g[2] - dens) < 1e-14


def _points():
    rng = np.random.default_rng(3)
    u, v = 0.6 * rng.normal(size=(2, 3))  # norms about 1: Gauss-Hermite's default order is accurate there
    return [(u, v, 0.7, -0.4), (0.6 * u, v, -1.1, 0.3), (u, 0.4 * v, 0.0, 1.5)]


def _nested_quadrature(f, u, v, bu, bv):
    """``E[f(U) f(V)]`` by nested adaptive quadrature in the coordinates ``U = bu + su z1``,
    ``V = bv + beta z1 + gamma z2``, with the kinks as break points: independent of the closed forms."""
    su = float(np.linalg.norm(u))
    beta = float(u @ v) / su
    gamma = math.sqrt(float(v @ v) - beta * beta)
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731

    def inner(z1):
        kink = -(bv + beta * z1) / gamma
        pts = [kink] if -12 < kink < 12 else None
        return integrate.quad(lambda z2: phi(z2) * f(bv + beta * z1 + gamma * z2), -12, 12, points=pts,
                              epsabs=1e-13, epsrel=1e-12, limit=200)[0]

    kink = -bu / su
    pts = [kink] if -12 < kink < 12 else None
    return integrate.quad(lambda z1: phi(z1) * f(bu + su * z1) * inner(z1), -12, 12, points=pts, epsabs=1e-12,
                          epsrel=1e-11, limit=200)[0]


_NUMPY = {"relu": lambda z: max(z, 0.0), "step": lambda z: float(z > 0), "sign": lambda z: float(np.sign(z)),
          "erf": math.erf, "normal_cdf": lambda z: ndtr(z), "tanh": math.tanh}


@pytest.mark.parametrize("name", CLOSED + ("tanh",))
def test_biased_potential_three_ways(name):
    """Closed form (Gauss-Hermite with means for tanh) against nested adaptive quadrature and Monte Carlo."""
    pot = es.potential(name)
    x = np.random.default_rng(11).normal(size=(400_000, 3))
    for u, v, bu, bv in _points():
        value = float(pot(u, v, bu, bv))
        quad = _nested_quadrature(_NUMPY[name], u, v, bu, bv)
        # tanh: Gauss-Hermite at the default order, about 1e-8 at |u| = 2 (as without biases)
        assert abs(value - quad) < (1e-9 if name != "tanh" else 1e-7), (u, v, bu, bv)
        f = pot.activation.fn
        samples = np.asarray(f(x @ u + bu) * f(x @ v + bv))
        assert abs(value - samples.mean()) < 5 * samples.std() / math.sqrt(len(samples)) + 1e-12


@pytest.mark.parametrize("name", SMOOTH)
def test_smooth_closed_forms_match_gauss_hermite_with_means(name):
    f = es.activation(name).fn
    for u, v, bu, bv in _points():
        gh = gauss_hermite_biased(f, f, 120, u @ u, u @ v, v @ v, bu, bv)
        assert abs(float(es.potential(name)(u, v, bu, bv)) - float(gh)) < 1e-11


@pytest.mark.slow
def test_gauss_hermite_with_means_against_the_sine_closed_form():
    # E[sin U sin V] = (cos(bu - bv) e^{-(nu + nv - 2c)/2} - cos(bu + bv) e^{-(nu + nv + 2c)/2}) / 2
    def exact(nu, c, nv, bu, bv):
        return 0.5 * (jnp.cos(bu - bv) * jnp.exp(-(nu + nv - 2 * c) / 2) - jnp.cos(bu + bv) * jnp.exp(-(nu + nv + 2 * c) / 2))
    args = jnp.array([0.8, 0.3, 1.3, 0.4, -0.9])
    gh = lambda z: gauss_hermite_biased(jnp.sin, jnp.sin, 60, *z)  # noqa: E731
    ex = lambda z: exact(*z)  # noqa: E731
    assert abs(float(jax.jit(gh)(args)) - float(ex(args))) < 1e-13
    assert np.abs(np.array(jax.jit(jax.grad(gh))(args) - jax.grad(ex)(args))).max() < 1e-12
    assert np.abs(np.array(jax.jit(jax.hessian(gh))(args) - jax.hessian(ex)(args))).max() < 1e-12


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("quadratic", "sin", "gauss", "sign")
                                  else n for n in CLOSED + ("tanh", "quadratic", "sin", "gauss")])
def test_zero_bias_is_the_unbiased_potential(name):
    # biased tanh units take 2-D quadrature (the potential's order); its unbiased default, the Hermite tables, is
    # more accurate than that quadrature (6e-7 apart at norm 2), so the identity is checked on the quadrature's
    # own unbiased form
    pot = es.potential(name, method="quadrature") if name == "tanh" else es.potential(name)
    u, v, _, _ = _points()[0]
    U = jnp.stack([u, v, 0.5 * u + 0.3 * v])
    zero = jnp.zeros(3)
    biased = jax.jit(lambda U, c: (pot.gram(U, U, c, c), pot.self_gram(U, c), jax.grad(lambda a: pot(a, U[1], c[0], c[1]))(U[0])))
    plain = jax.jit(lambda U: (pot.gram(U, U), pot.self_gram(U), jax.grad(lambda a: pot(a, U[1]))(U[0])))
    for x, y in zip(biased(U, zero), plain(U)):
        err = np.abs(np.array(x - y))
        # on a Gram diagonal (u = v) the unbiased arc-cosine forms take sqrt of a rounding error (1e-9);
        # the biased ones snap rho to 1 there, so only the off-diagonal entries agree to 1e-12
        assert (err.max() if err.ndim < 2 else (err - np.diag(np.diag(err))).max()) < 1e-10
        assert err.max() < 3e-8
    # a small bias moves the potential by about d Phi / d bu * bu: continuous at 0
    assert abs(float(biased(U, zero.at[0].set(1e-7))[0][0, 1]) - float(plain(U)[0][0, 1])) < 1e-6


def _pair_at_a_point(name):
    """``(F, z)``: the biased potential as a function of ``z = [u (3), v (3), bu, bv]``, and a generic ``z``."""
    pot = es.potential(name)
    u, v, bu, bv = _points()[1]
    return (lambda z: pot(z[:3], z[3:6], z[6], z[7])), jnp.concatenate([jnp.asarray(u), jnp.asarray(v),
                                                                         jnp.array([bu, bv])])


@pytest.mark.parametrize("name", CLOSED + ("tanh",))
def test_biased_gradients_against_finite_differences(name):
    F, z = _pair_at_a_point(name)
    f, g = jax.jit(jax.vmap(jax.value_and_grad(F)))(jnp.concatenate([z + 1e-5 * jnp.eye(8), z - 1e-5 * jnp.eye(8),
                                                                    z[None]]))
    assert np.abs((np.asarray(f[:8]) - np.asarray(f[8:16])) / 2e-5 - np.asarray(g[16])).max() < 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("name", CLOSED + ("tanh",))
def test_biased_hessians_against_finite_differences(name):
    F, z = _pair_at_a_point(name)
    H = np.array(jax.jit(jax.hessian(F))(z))
    g = np.array(jax.jit(jax.vmap(jax.grad(F)))(jnp.concatenate([z + 1e-5 * jnp.eye(8), z - 1e-5 * jnp.eye(8)])))
    assert np.abs((g[:8] - g[8:16]) / 2e-5 - H).max() < (1e-7 if name != "tanh" else 1e-6)


@pytest.mark.parametrize("name", ("relu", pytest.param("step", marks=pytest.mark.slow),
                                  pytest.param("sign", marks=pytest.mark.slow), pytest.param("tanh", marks=pytest.mark.slow)))
def test_self_gram_diagonal_is_the_second_moment(name):
    pot = es.potential(name)
    U = jnp.array([[0.6, -0.3, 0.2], [0.1, 0.9, -0.4]])
    c = jnp.array([0.5, -0.8])
    diag = lambda U, b: pot.self_gram(U, b)[0, 0]  # noqa: E731
    K, G, dd = jax.jit(lambda U, c: (pot.self_gram(U, c), pot.gram(U, U, c, c), jax.grad(diag, argnums=(0, 1))(U, c)))(U, c)
    f = _NUMPY[name]
    for i in range(2):
        s = float(jnp.linalg.norm(U[i]))
        ref = integrate.quad(lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi) * f(float(c[i]) + s * z) ** 2,
                             -12, 12, points=[-float(c[i]) / s], epsabs=1e-13, limit=200)[0]
        assert abs(float(K[i, i]) - ref) < 1e-9
    assert abs(float(K[0, 1]) - float(G[0, 1])) < 1e-14
    # the diagonal's gradient in the bias and the weights against finite differences
    shifted = jax.jit(jax.vmap(diag))(jnp.stack([U, U, U.at[0, 1].add(1e-6), U.at[0, 1].add(-1e-6)]),
                                      jnp.stack([c.at[0].add(1e-6), c.at[0].add(-1e-6), c, c]))
    assert abs(float(dd[1][0]) - float(shifted[0] - shifted[1]) / 2e-6) < 1e-7
    assert abs(float(dd[0][0, 1]) - float(shifted[2] - shifted[3]) / 2e-6) < 1e-7


# --- networks, losses, problems -------------------------------------------------------------------------------

def test_unbiased_networks_keep_their_layout_and_draws():
    t0 = es.random_teacher(jax.random.key(0), d=3, k=2)
    t1 = es.random_teacher(jax.random.key(0), d=3, k=2, bias_scale=0.5)
    assert t0.bias is None and t1.bias.shape == (2,)
    assert (t0.w == t1.w).all() and (t0.b == t1.b).all() and not np.allclose(t1.bias / 0.5, t1.b)
    s = es.random_student(jax.random.key(1), d=3, k=2)
    problem = es.Problem("erf", t0)
    assert problem.plain and problem.closed_form and problem.flatten(s).shape == (8,)
    sb = es.random_student(jax.random.key(1), d=3, k=2, bias_scale=0.0)
    assert problem.flatten(sb).shape == (10,) and not problem.for_student(sb).closed_form
    back = problem.for_student(sb).unflatten(problem.flatten(sb))
    assert all((x == y).all() for x, y in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(sb)))


@pytest.mark.slow
def test_population_loss_with_biases_matches_samples():
    t = es.random_teacher(jax.random.key(2), d=3, k=2, bias_scale=1.0)
    s = es.random_student(jax.random.key(3), d=3, k=3, bias_scale=1.0)
    x = jax.random.normal(jax.random.key(4), (400_000, 3))
    loss = jax.jit(es.population_loss, static_argnums=0)
    for name in ("relu", "erf", "tanh"):
        exact = float(loss(name, t, s))
        err = es.predict(name, t.b, t.w, x, t.bias) - es.predict(name, s.a, s.theta, x, s.bias)
        sq = np.asarray(err * err)
        assert abs(exact - sq.mean()) < 5 * sq.std() / math.sqrt(len(sq))
        assert float(loss(name, t, es.Student(a=t.b, theta=t.w, bias=t.bias, ))) == pytest.approx(0.0, abs=1e-12)


def _grad(problem, student):
    return jax.jit(lambda p, s: p.grad(s))(problem, student)


def test_train_groups_freeze_biases():
    t = es.random_teacher(jax.random.key(2), d=3, k=2, bias_scale=1.0)
    s = es.random_student(jax.random.key(3), d=3, k=2, bias_scale=0.5)
    x = jnp.zeros(10)                                            # [a (2), theta (6), bias (2)]
    masks = {train: np.asarray(es.Problem("erf", t, train=train, student_bias=True).mask(x))
             for train in ("both", "theta", "a", "a+theta", "bias", "theta+bias")}
    assert masks["both"].tolist() == [1] * 10 and masks["a"].tolist() == [1] * 2 + [0] * 8
    assert masks["theta"].tolist() == masks["theta+bias"].tolist() == [0] * 2 + [1] * 8
    assert masks["a+theta"].tolist() == [1] * 8 + [0] * 2 and masks["bias"].tolist() == [0] * 8 + [1] * 2
    g = _grad(es.Problem("erf", t, train="a+theta"), s)          # frozen biases get no gradient
    assert (g.bias == 0).all() and np.abs(np.asarray(g.theta)).max() > 0
    with pytest.raises(ValueError, match="a\\+theta"):
        es.Problem("erf", t, train="a+bais")


@pytest.mark.slow
def test_hessian_over_trained_variables_with_biases():
    t = es.random_teacher(jax.random.key(2), d=3, k=2, bias_scale=1.0)
    s = es.random_student(jax.random.key(3), d=3, k=2, bias_scale=0.5)
    H = es.hessian("erf", t, s)
    assert H.shape == (10, 10)
    assert np.abs(np.asarray(es.hessian("erf", t, s, train="theta")) - np.asarray(H)[2:, 2:]).max() < 1e-14


@pytest.mark.slow
def test_input_map_against_correlated_samples():
    """X ~ N(mu, Sigma) drawn by NumPy (not through the reduction) against the problem's exact loss."""
    d = 3
    mu = np.array([0.5, -0.2, 1.0])
    A = np.array([[1.0, 0.5, 0.0], [0.0, 0.8, -0.4], [0.3, 0.0, 0.6]])
    Sigma = A @ A.T
    t = es.random_teacher(jax.random.key(5), d=d, k=2, bias_scale=0.5)
    s = es.random_student(jax.random.key(6), d=d, k=2)
    x = np.random.default_rng(7).multivariate_normal(mu, Sigma, size=400_000)
    value = jax.jit(lambda p, s: p.value(s))
    for name in ("relu", "erf", "tanh"):
        exact = float(value(es.Problem(name, t, input_mean=mu, input_cov=Sigma), s))
        err = es.predict(name, t.b, t.w, x, t.bias) - es.predict(name, s.a, s.theta, x)
        sq = np.asarray(err * err)
        assert abs(exact - sq.mean()) < 5 * sq.std() / math.sqrt(len(sq)), name
    # gradients through the map are exact: against finite differences of the value
    problem = es.Problem("erf", t, input_mean=mu, input_cov=Sigma)
    g = _grad(problem, s)
    e = jnp.zeros_like(s.theta).at[1, 2].set(1e-6)
    fd = value(problem, es.Student(a=s.a, theta=s.theta + e)) - value(problem, es.Student(a=s.a, theta=s.theta - e))
    assert abs(float(fd) / 2e-6 - float(g.theta[1, 2])) < 1e-8
    # whiten: the isotropic network has the same loss
    tw, sw = es.whiten(t, mean=mu, cov=Sigma), es.whiten(s, mean=mu, cov=Sigma)
    assert float(jax.jit(es.population_loss, static_argnums=0)("erf", tw, sw)) == pytest.approx(
        float(value(problem, s)), rel=1e-12)


@pytest.mark.slow
def test_gradient_descent_learns_a_biased_relu_teacher():
    """From a random start with zero biases, GD reaches the teacher's function; units agree up to ReLU's
    positive rescaling (a, w, c) -> (a / s, s w, s c)."""
    t = es.Teacher(b=jnp.array([1.0, -0.8]), w=jnp.array([[1.0, 0.2], [-0.3, 0.9]]), bias=jnp.array([0.5, -0.4]))
    s = es.random_student(jax.random.key(0), d=2, k=2, scale=0.7, bias_scale=0.0)
    traj = es.gradient_descent("relu", t, s, lr=0.2, max_steps=3000)
    assert abs(float(traj.final_loss)) < 1e-9 and float(traj.losses[0]) > 0.1
    f = traj.final
    norm = lambda w: np.linalg.norm(np.asarray(w), axis=-1)  # noqa: E731
    unit = lambda a, w, c: np.concatenate([(np.asarray(a) * norm(w))[:, None], np.asarray(w) / norm(w)[:, None],  # noqa: E731
                                           (np.asarray(c) / norm(w))[:, None]], 1)
    S, T = unit(f.a, f.theta, f.bias), unit(t.b, t.w, t.bias)
    assert min(np.abs(S - T).max(), np.abs(S[::-1] - T).max()) < 1e-3


@pytest.mark.slow
def test_analyze_and_census_with_biases():
    t = es.Teacher(b=jnp.array([1.0, -0.8]), w=jnp.array([[1.0, 0.2], [-0.3, 0.9]]), bias=jnp.array([0.5, -0.4]))
    flip = jnp.array([-1.0, 1.0])
    # the teacher; its first unit flipped with its bias (erf is odd: the same function); flipped without it
    pts = es.Student(a=jnp.stack([t.b, flip * t.b, flip * t.b]), theta=jnp.stack([t.w, flip[:, None] * t.w] * 1
                                                                                   + [flip[:, None] * t.w]),
                     bias=jnp.stack([t.bias, flip * t.bias, t.bias]))
    c = es.census("erf", t, pts, refine=False)
    assert [f.seeds for f in c.families] == [(0, 1), (2,)]
    assert c.families[0].kind == "global minimum" and c.families[0].recovered == 2
    assert c.families[1].kind != "global minimum"
    rep = es.analyze("erf", t, pts)                              # the census's compiled program again
    assert rep.eigenvalues.shape == (3, 8) and list(map(str, rep.verdict[:2])) == ["global minimum"] * 2


# --- errors -----------------------------------------------------------------------------------------------------

def test_bad_input_is_a_clear_error():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    with pytest.raises(ValueError, match="bias must have the shape of b"):
        es.Teacher(b=t.b, w=t.w, bias=jnp.zeros(3))
    with pytest.raises(ValueError, match="bias must have the shape of a"):
        es.Student(a=t.b, theta=t.w, bias=jnp.zeros((2, 1)))
    with pytest.raises(ValueError, match="bias of U must have shape \\(2,\\)"):
        es.potential("relu").gram(t.w, t.w, jnp.zeros(3), None)
    with pytest.raises(ValueError, match="no biased form"):
        es.potential("gaussian").gram(t.w, t.w, jnp.zeros(2), None)
    with pytest.raises(ValueError, match="positive definite; its smallest eigenvalue"):
        es.Problem("erf", t, input_cov=np.diag([1.0, 0.0, -1.0]))
    with pytest.raises(ValueError, match="input_cov must have shape \\(d, d\\) = \\(3, 3\\)"):
        es.Problem("erf", t, input_cov=np.eye(2))
    with pytest.raises(ValueError, match="input_mean must have shape"):
        es.whiten(t, mean=np.zeros(2))
    with pytest.raises(ValueError, match="symmetric"):
        es.Problem("erf", t, input_cov=np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    with pytest.raises(ValueError, match="gradient='closed_form'"):
        es.Problem("erf", es.Teacher(b=t.b, w=t.w, bias=jnp.zeros(2)), gradient="closed_form")
    sb = es.random_student(jax.random.key(1), d=3, k=2, bias_scale=1.0)
    with pytest.raises(ValueError, match="nodewise_descent works on bias-free units"):
        es.nodewise_descent(jax.random.key(0), "erf", t, sb)
    with pytest.raises(ValueError, match="bias-free"):
        es.order_parameters(t, sb)


def test_config_bias_and_input_options():
    from earnshaw.experiments.config import ConfigError, parse_config

    base = dict(activation="relu", seeds=2, teacher=dict(d=2, k=2))
    cfg = parse_config(dict(base, teacher=dict(d=2, k=2, bias_scale=1.0), student=dict(bias_scale=0.0),
                            input_mean=[0.0, 1.0], input_cov=[[1.0, 0.2], [0.2, 1.0]],
                            algorithm=dict(name="gradient_descent", options=dict(train="a+theta"))))
    assert cfg.teacher.bias_scale == 1.0 and cfg.student.bias_scale == 0.0
    # unset, the new keys leave a cell's id as it was
    assert "input_mean" not in parse_config(base).cell_dict() and "bias_scale" not in parse_config(base).cell_dict()["student"]
    bad = [(dict(teacher=dict(d=2, k=2, bias=0.5)), "bias: only for an explicit teacher"),
           (dict(teacher=dict(d=2, k=2, w="identity", bias_scale=1.0)), "bias_scale: only for a random teacher"),
           (dict(teacher=dict(d=2, k=2, w="identity", bias=[1.0, 2.0, 3.0])), "bias: one value per teacher unit"),
           (dict(input_cov=[[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
           (dict(student=dict(biass=1.0)), "student.biass: unknown key"),
           (dict(algorithm=dict(name="gradient_descent", options=dict(train="a+foo"))), "a+theta keeps biases fixed")]
    for change, message in bad:
        with pytest.raises(ConfigError, match=message.replace("+", "\\+")):
            parse_config(dict(base, **change))

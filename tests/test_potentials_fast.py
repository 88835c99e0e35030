"""New activations (issue 16 items 3-5): closed forms against quadrature and Monte Carlo, the fast Hermite tables
and the ELU/SELU half-range rule against order-200 Gauss-Hermite / 2-D adaptive quadrature, gradients against
finite differences, Hermite tail bounds, options and errors."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate as si

import earnshaw as es
from earnshaw.potentials import hermite, inner

U = np.array([0.7, -0.2, 0.4])
V = np.array([0.1, 0.5, -0.6])


def _triple(u, v):
    return float(u @ u), float(u @ v), float(v @ v)


def _gh200(fn, u, v):
    with jax.enable_x64(True):
        return float(inner.gauss_hermite(fn, fn, 200, *_triple(u, v)))


def _fd_grad(f, u, h=1e-6):
    return np.array([(f(u + h * e) - f(u - h * e)) / (2 * h) for e in np.eye(u.size)])


@pytest.mark.parametrize("name,params,ref", [
    ("gelu", {}, lambda z: z * 0.5 * (1 + math.erf(z / math.sqrt(2)))),
    ("abrelu", {"a": -0.3, "b": 1.5}, lambda z: 1.5 * z if z > 0 else -0.3 * z),
    ("monomial", {"n": 3}, lambda z: z**3),
    ("polynomial", {"coeffs": [0.5, -1.0, 0.25, 0.1]}, lambda z: 0.5 - z + 0.25 * z * z + 0.1 * z**3),
])
def test_closed_forms_three_ways(name, params, ref, getkey):
    with jax.enable_x64(True):
        pot = es.potential(name, **params)
        assert es.potentials.closed_form(pot.activation) is not None
        exact = float(pot(jnp.asarray(U), jnp.asarray(V)))
        # the activation is the plain-Python reference
        z = np.linspace(-2, 2, 5)
        np.testing.assert_allclose(np.asarray(pot.activation(jnp.asarray(z))), [ref(x) for x in z], atol=1e-14)
        if name != "abrelu":  # smooth: Gauss-Hermite is exact to rounding
            assert exact == pytest.approx(_gh200(pot.activation.fn, U, V), abs=1e-12)
        else:
            nu = math.sqrt(U @ U)
            beta, gam = U @ V / nu, math.sqrt(V @ V - (U @ V / nu) ** 2)
            dens = lambda t: math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)  # noqa: E731
            val, _ = si.dblquad(lambda z2, z1: ref(nu * z1) * ref(beta * z1 + gam * z2) * dens(z1) * dens(z2),
                                -8, 8, lambda z1: -8, lambda z1: -beta * z1 / gam, epsabs=1e-11)
            val2, _ = si.dblquad(lambda z2, z1: ref(nu * z1) * ref(beta * z1 + gam * z2) * dens(z1) * dens(z2),
                                 -8, 8, lambda z1: -beta * z1 / gam, lambda z1: 8, epsabs=1e-11)
            assert exact == pytest.approx(val + val2, abs=1e-8)
        mean, se = es.monte_carlo(getkey(), pot, jnp.asarray(U), jnp.asarray(V), 200_000)
        assert abs(exact - float(mean)) < 4 * float(se) + 1e-12
        g = np.asarray(jax.grad(lambda x: pot(x, jnp.asarray(V)))(jnp.asarray(U)))
        np.testing.assert_allclose(g, _fd_grad(lambda x: float(pot(jnp.asarray(x), jnp.asarray(V))), U), atol=1e-8)


def test_abrelu_specialises_to_leaky_relu_and_abs():
    with jax.enable_x64(True):
        u, v = jnp.asarray(U), jnp.asarray(V)
        assert float(es.potential("abrelu", a=0.2, b=1.0)(u, v)) == pytest.approx(
            float(es.potential("leaky_relu", slope=0.2)(u, v)), abs=1e-15)
        assert float(es.potential("abrelu", a=-1.0, b=1.0)(u, v)) == pytest.approx(
            float(es.potential("abs")(u, v)), abs=1e-15)
        assert es.potential("arccos1") is es.potential("relu")


def test_default_methods():
    """The named smooth activations without a closed form take the tables by default; ``order=`` alone, or
    ``method="quadrature"``, asks for quadrature; a custom activation keeps quadrature (its table would be built
    in every process); closed forms stay closed."""
    from earnshaw.potentials import _default_method  # the rule, without building five tables
    for name in ("tanh", "sigmoid_pm1", "softplus", "silu", "swish", "sigmoid"):
        assert _default_method(es.activation(name)) == "fast", name
    assert dict(es.potential("tanh").params)["method"] == "fast"
    assert dict(es.potential("tanh", order=64).params) == {"order": 64}
    assert "method" not in dict(es.potential("tanh", method="quadrature").params)
    assert dict(es.potential(es.activations.custom(jnp.tanh, "my_tanh", odd=True)).params) == {"order": 128}
    # a biased unit of a table-backed potential takes quadrature of the potential's (fallback) order
    fast16, quad16 = es.potential("tanh", method="fast", order=16), es.potential("tanh", order=16)
    assert dict(fast16.params)["order"] == 16 and dict(es.potential("tanh").params)["order"] == 128
    with jax.enable_x64(True):
        u, v, bu, bv = jnp.array([[0.6, -0.3, 0.2]]), jnp.array([[0.1, 0.5, -0.4]]), jnp.array([0.3]), jnp.array([-0.2])
        np.testing.assert_allclose(fast16.gram(u, v, bu, bv), quad16.gram(u, v, bu, bv), atol=1e-15)
    assert dict(es.potential("erf").params) == {} and es.potential("elu").params[-2:] == (("method", "piecewise"),
                                                                                        ("order", 48))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", "sigmoid_pm1", "softplus", "silu", "sigmoid"])
def test_fast_tables_against_order_200_quadrature(name):
    """Values and gradients within 1e-12 (the default tol) of order-200 Gauss-Hermite at unit-scale norms."""
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        assert dict(es.potential(name).params)["method"] == "fast"  # the default for the named smooth activations
        pot = es.potential(name, method="fast")
        assert dict(pot.params)["method"] == "fast"
        fn = pot.activation.fn
        for _ in range(4):
            u, v = rng.normal(size=3), rng.normal(size=3)
            u *= rng.uniform(0.5, 1.05) / np.linalg.norm(u)
            v *= rng.uniform(0.5, 1.05) / np.linalg.norm(v)
            assert float(pot(jnp.asarray(u), jnp.asarray(v))) == pytest.approx(_gh200(fn, u, v), abs=1e-12)
            g = np.asarray(jax.grad(lambda x: pot(x, jnp.asarray(v)))(jnp.asarray(u)))
            g_ref = np.asarray(jax.grad(lambda x: inner.gauss_hermite(fn, fn, 200, x @ x, x @ v, v @ v))(
                jnp.asarray(u)))
            np.testing.assert_allclose(g, g_ref, atol=1e-11)
        # long, nearly parallel vectors: certified by a long truncation (tier 0) or by none (tier 1: the whole
        # table, within its N = 399 tail bound, 4e-9 at norm 2.5 for tanh) of order-300 quadrature; past the
        # radius (5), order-128 quadrature itself
        from earnshaw.potentials import fast
        table = pot.fn.args[1]
        u, v = np.array([2.5, 0.0, 0.0]), np.array([2.4, 0.05, 0.0])
        assert int(fast.tier(table, *_triple(u, v))) in (0, 1)
        assert float(pot(jnp.asarray(u), jnp.asarray(v))) == pytest.approx(
            float(inner.gauss_hermite(fn, fn, 300, *_triple(u, v))), abs=1e-8)
        u, v = np.array([5.2, 0.0, 0.0]), np.array([2.4, 0.05, 0.0])
        assert int(fast.tier(table, *_triple(u, v))) == 2
        assert float(pot(jnp.asarray(u), jnp.asarray(v))) == pytest.approx(
            float(inner.gauss_hermite(fn, fn, 128, *_triple(u, v))), abs=1e-14)


@pytest.mark.parametrize("name", ["elu", "selu"])
def test_piecewise_against_adaptive_quadrature_and_monte_carlo(name, getkey):
    with jax.enable_x64(True):
        pot = es.potential(name)
        fn = pot.activation.fn
        ref = lambda z: float(fn(jnp.asarray(z)))  # noqa: E731
        nu = math.sqrt(U @ U)
        beta, gam = U @ V / nu, math.sqrt(V @ V - (U @ V / nu) ** 2)
        dens = lambda t: math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)  # noqa: E731
        total = 0.0
        for lo, hi in ((-7, 0), (0, 7)):  # split at both kinks: z1 = 0 and beta z1 + gam z2 = 0
            for inner_lo, inner_hi in ((lambda z1: -7, lambda z1: -beta * z1 / gam),
                                       (lambda z1: -beta * z1 / gam, lambda z1: 7)):
                val, _ = si.dblquad(lambda z2, z1: ref(nu * z1) * ref(beta * z1 + gam * z2) * dens(z1) * dens(z2),
                                    lo, hi, inner_lo, inner_hi, epsabs=1e-10)
                total += val
        exact = float(pot(jnp.asarray(U), jnp.asarray(V)))
        assert exact == pytest.approx(total, abs=1e-8)
        assert exact == pytest.approx(float(es.potential(name, method="piecewise", order=90)(jnp.asarray(U), jnp.asarray(V))), abs=1e-13)
        mean, se = es.monte_carlo(getkey(), pot, jnp.asarray(U), jnp.asarray(V), 200_000)
        assert abs(exact - float(mean)) < 4 * float(se)
        assert float(pot(jnp.asarray(V), jnp.asarray(U))) == pytest.approx(exact, abs=1e-15)
        g = np.asarray(jax.grad(lambda x: pot(x, jnp.asarray(V)))(jnp.asarray(U)))
        np.testing.assert_allclose(g, _fd_grad(lambda x: float(pot(jnp.asarray(x), jnp.asarray(V))), U), atol=1e-8)


def test_hermite_coefficients_and_tail_bound():
    """Exact for a polynomial; tanh's tail bound holds against the sum it bounds at unit norm."""
    hc = hermite.hermite_coefficients(lambda z: z**3 - 2 * z, 1.0, 6)
    # z^3 - 2z = He_3 + He_1 = sqrt(6) h_3 + h_1
    np.testing.assert_allclose(hc.c[0], [0, 1, 0, math.sqrt(6), 0, 0, 0], atol=1e-13)
    hc = hermite.hermite_coefficients(jnp.tanh, np.array([0.8, 1.0]), 200)
    for n in (10, 40):
        bound = hermite.tail_bound(hc, n)
        assert np.all(bound >= (hc.c[:, n + 1:] ** 2).sum(1))
        # on unit vectors the truncated series misses at most the bound, against quadrature
        with jax.enable_x64(True):
            for rho in (0.5, 0.99, 1.0):
                u, v = np.array([1.0, 0.0]), np.array([rho, math.sqrt(1 - rho * rho)])
                trunc = float(hermite.series(jnp.asarray(hc.c[1, : n + 1]), jnp.asarray(hc.c[1, : n + 1]),
                                             jnp.asarray(rho)))
                assert abs(trunc - _gh200(jnp.tanh, u, v)) <= rho ** (n + 1) * bound[1] + 1e-14


def test_options_and_errors():
    with pytest.raises(ValueError, match="no closed-form potential"):
        es.potential("tanh", method="closed")
    with pytest.raises(ValueError, match="unknown method"):
        es.potential("tanh", method="magic")
    with pytest.raises(ValueError, match="takes no parameters, got \\['tolerance'\\]"):
        es.potential("tanh", tolerance=1e-8)
    with pytest.raises(ValueError, match="takes order"):
        es.potential("tanh", method="quadrature", tol=1e-8)
    assert dict(es.potential("tanh", order=60).params)["order"] == 60
    # a looser tol certifies the same pair with fewer degrees
    from earnshaw.potentials import fast
    loose, tight = (es.potential("tanh", tol=tol, terms=160).fn.args[1] for tol in (1e-8, 1e-12))
    assert int(fast.degrees_used(loose, 1.0, 1.0, 1.0)) < int(fast.degrees_used(tight, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="on parallel units of norm 1"):
        es.potential("tanh", terms=21)
    with pytest.raises(ValueError, match="polynomial needs coeffs"):
        es.activation("polynomial", coeffs="z^2")
    with pytest.raises(ValueError, match="abrelu takes only a, b"):
        es.activation("abrelu", slope=0.1)


def test_config_potential_options():
    from earnshaw.experiments.config import parse_config
    base = {"activation": "tanh", "seeds": 1, "teacher": {"d": 3, "k": 2}}
    cfg = parse_config({**base, "potential_options": {"method": "quadrature", "order": 40}})
    assert dict(cfg.build_potential().params)["order"] == 40
    with pytest.raises(Exception, match="degree"):
        parse_config({**base, "potential_options": {"degree": 40}})


def _loss_and_derivatives(pot, t, s, hessian=False):
    loss = lambda th: es.population_loss(pot, t, es.Student(theta=th, a=s.a))  # noqa: E731
    value, grad = jax.value_and_grad(loss)(s.theta)
    return float(value), np.asarray(grad), np.asarray(jax.hessian(loss)(s.theta)) if hessian else None


def _unit_teacher_and_student(getkey, d=4, k=3, norm=0.9):
    t = es.random_teacher(getkey(), d=d, k=k)
    t = es.Teacher(w=t.w / jnp.linalg.norm(t.w, axis=-1, keepdims=True), b=t.b)
    s = es.random_student(getkey(), d=d, k=k)
    return t, es.Student(theta=norm * s.theta / jnp.linalg.norm(s.theta, axis=-1, keepdims=True), a=s.a)


@pytest.mark.slow
def test_fast_table_hessian(getkey):
    """The Hessian through the custom JVP (forward over reverse) against order-200 quadrature's (Price's
    theorem), and symmetric; slow: compiling the fallback branch's fourth derivatives takes ~30 s."""
    with jax.enable_x64(True):
        t, s = _unit_teacher_and_student(getkey)
        h = _loss_and_derivatives(es.potential("tanh", method="fast"), t, s, hessian=True)[2]
        h_ref = _loss_and_derivatives(es.potential("tanh", order=200), t, s, hessian=True)[2]
        np.testing.assert_allclose(h, h_ref, atol=1e-9)
        np.testing.assert_allclose(h, np.swapaxes(np.swapaxes(h, 0, 2), 1, 3), atol=1e-12)


def test_fast_fallback_hessian_is_the_quadratures():
    """Past the radius the table hands over to quadrature in a loop over chunks of pairs; JAX's reverse mode
    inlines custom rules inside loops, so forward-over-reverse Hessians differentiated the quadrature rule (0.35
    off with this order and not symmetric for this pair) until the loop got a derivative rule of its own. The
    Hessian must be the plain quadrature's of the same order (Price's theorem at every level), hence symmetric."""
    from earnshaw.potentials import fast
    with jax.enable_x64(True):
        fast_pot, quad = es.potential("tanh", method="fast", order=16), es.potential("tanh", order=16)
        u, v = jnp.array([0.08, -1.3, 0.87]), jnp.array([2.93, 1.14, -4.24])  # |v| = 5.3 > radius 5
        assert int(fast.tier(fast_pot.fn.args[1], u @ u, u @ v, v @ v)) == 2
        h = jax.hessian(lambda x: fast_pot(x, v))(u)
        np.testing.assert_allclose(h, jax.hessian(lambda x: quad(x, v))(u), atol=1e-13)
        np.testing.assert_allclose(h, h.T, atol=1e-15)


def test_fast_table_loss_gradient_and_fallback(getkey):
    """The tanh table's loss, value and one-pass partials (custom JVP), against high-order quadrature on each
    evaluation (:func:`~earnshaw.potentials.fast.grams_plan`): from a random start a few blocks of degrees; at the
    global minimum (every student unit on a teacher unit, rho = 1) and with a unit of norm 1.6 parallel to a
    teacher unit, longer truncations, all certified; parallel units of norm 2.5, no truncation certified (the
    whole table, within its tail bound); past the radius the fallback, here order-16 quadrature, far from
    1e-12, so the comparison shows it ran; a vmapped batch takes its most demanding instance's evaluation."""
    from earnshaw.potentials import fast
    with jax.enable_x64(True):
        fast_pot, ref = es.potential("tanh", method="fast", order=16), es.potential("tanh", order=200)
        table = fast.build_table(jnp.tanh, odd=True, order=16)
        quad = es.potential("tanh", order=16)
        t, s = _unit_teacher_and_student(getkey)
        blocks = ((0, 0), (0, 1), (1, 1))
        plan = lambda st: tuple(int(x) for x in fast.grams_plan(table, (st.theta, t.w), blocks))  # noqa: E731

        def check(st, reference, atol, grad_atol=None):
            v, g, _ = _loss_and_derivatives(fast_pot, t, st)
            v_ref, g_ref, _ = _loss_and_derivatives(reference, t, st)
            assert abs(v - v_ref) < atol
            np.testing.assert_allclose(g, g_ref, atol=grad_atol or 10 * atol)
        tier, start = plan(s)
        assert tier == 0 and start < 64 and abs(float(es.population_loss(quad, t, s)) - float(
            es.population_loss(ref, t, s))) > 1e-9
        check(s, ref, 1e-12)
        at_min = es.Student(theta=t.w, a=s.a)
        long_unit = es.Student(theta=s.theta.at[0].set(1.6 * t.w[0]), a=s.a)
        assert plan(at_min)[0] == plan(long_unit)[0] == 0 and start < plan(at_min)[1] < plan(long_unit)[1]
        check(at_min, ref, 1e-12)
        check(long_unit, es.potential("tanh", order=300), 1e-11)
        # parallel units of norm 2.5: no truncation is certified; the whole table, its value within its tail bound
        # (4e-9 a pair, times the output weights in the loss); the bound does not cover the partials in the norms,
        # 1e-5 here
        far = es.Student(theta=s.theta.at[0].set(2.5 * t.w[0]).at[1].set(2.5 * t.w[0]), a=s.a)
        assert plan(far) == (1, table.degrees.size)
        check(far, es.potential("tanh", order=300), 4e-9 * float(jnp.sum(jnp.abs(s.a))) ** 2, grad_atol=1e-4)

        # past the radius (5): the pairs of that unit by quadrature of the table's order (value and derivatives),
        # every other pair by the series, as in a call without it
        out = es.Student(theta=s.theta.at[0].set(5.2 * t.w[0]), a=s.a)
        assert plan(out)[0] == 2

        def pieces_loss(theta):
            """The loss with unit 0's pairs from quadrature and the rest from the series, call by call."""
            k = theta.shape[0]
            own = jnp.zeros((k, k)).at[1:, 1:].set(fast_pot.self_gram(theta[1:]))
            row = quad.gram(theta[:1], theta[1:])[0]
            own = own.at[0, 1:].set(row).at[1:, 0].set(row).at[0, 0].set(quad.self_gram(theta[:1])[0, 0])
            cross = jnp.concatenate([quad.gram(theta[:1], t.w), fast_pot.gram(theta[1:], t.w)])
            return s.a @ own @ s.a - 2.0 * s.a @ cross @ t.b + t.b @ fast_pot.self_gram(t.w) @ t.b
        v, g, _ = _loss_and_derivatives(fast_pot, t, out)
        assert abs(v - float(pieces_loss(out.theta))) < 1e-12
        np.testing.assert_allclose(g, np.asarray(jax.grad(pieces_loss)(out.theta)), atol=1e-12)
        # in a batch, an instance past the radius takes quadrature for its own pairs only: the other instance's
        # loss is what it is alone
        batch = es.Student(theta=jnp.stack([s.theta, out.theta]), a=jnp.stack([s.a, s.a]))
        vals = jax.vmap(lambda st: es.population_loss(fast_pot, t, st))(batch)
        alone = float(es.population_loss(fast_pot, t, s))
        assert abs(float(vals[0]) - alone) < 1e-12 and abs(float(vals[1]) - v) < 1e-12
        assert abs(alone - float(es.population_loss(quad, t, s))) > 1e-9  # so the series ran for it


def test_fast_batch_runs_each_segment_at_its_own_truncation(getkey):
    """Under vmap the batch is sorted by the blocks each instance needs and run in segments, each at its own
    most demanding instance's truncation: every instance's loss, gradient and Hessian equal its own call's (to
    the tol), in the caller's order, under vmap of the Hessian (forward over reverse) and under two nested
    vmaps; and the segments' truncations differ, so the split is not a no-op."""
    from earnshaw.potentials import fast
    with jax.enable_x64(True):
        pot = es.potential("tanh")
        table = pot.fn.args[1]
        t, s = _unit_teacher_and_student(getkey, d=4, k=3)
        # instances 3, 9 and 12 have a unit on a teacher unit (rho = 1, many blocks), the rest random starts
        thetas = []
        for i in range(16):
            th = _unit_teacher_and_student(getkey, d=4, k=3)[1].theta
            thetas.append(th.at[0].set(1.3 * t.w[0]) if i in (3, 9, 12) else th)
        batch = es.Student(theta=jnp.stack(thetas), a=jnp.broadcast_to(s.a, (16, 3)))
        blocks = ((0, 0), (0, 1), (1, 1))
        need = [int(fast.grams_plan(table, (th, t.w), blocks)[1]) for th in thetas]
        assert fast._segments(16) == 2 and sorted(need)[7] < max(need)
        loss = lambda th, a: es.population_loss(pot, t, es.Student(theta=th, a=a))  # noqa: E731
        vals, grads = jax.vmap(jax.value_and_grad(loss))(batch.theta, batch.a)
        hess = jax.vmap(jax.hessian(loss))(batch.theta, batch.a)
        for i, th in enumerate(thetas):
            v, g = jax.value_and_grad(loss)(th, s.a)
            assert abs(float(vals[i] - v)) < 1e-12
            np.testing.assert_allclose(grads[i], g, atol=1e-11)
            np.testing.assert_allclose(hess[i], jax.hessian(loss)(th, s.a), atol=1e-10)
        nested = jax.vmap(jax.vmap(loss))(batch.theta.reshape(4, 4, 3, 4), batch.a.reshape(4, 4, 3))
        np.testing.assert_allclose(nested.reshape(-1), vals, atol=1e-12)


def test_fast_truncation_is_certified_at_every_length():
    """Pairs at every angle and norms 0.2-1.5: each call runs the degrees its pairs need (more for larger
    |rho|), and the value and partials stay within the 1e-12 tol of order-200 quadrature; the Gram matrices
    of a loss in one evaluation (fast_grams) equal the pairwise potential, the diagonal from the table of
    E[s(|u| Z)^2] included."""
    from earnshaw.potentials import fast
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        table = fast.build_table(jnp.tanh, odd=True)
        pair = jax.jit(jax.value_and_grad(lambda x: fast.fast_potential_fn(jnp.tanh, table, *x)))
        ref = jax.jit(jax.value_and_grad(lambda x: inner.gauss_hermite(jnp.tanh, jnp.tanh, 200, *x)))
        used = {}
        for rho in (0.1, 0.5, 0.8, 0.95, 1.0):
            for _ in range(3):
                a, b = rng.uniform(0.2, 1.5, 2)
                x = jnp.asarray([a * a, rho * a * b * rng.choice([-1, 1]), b * b])
                (v, g), (v_ref, g_ref) = pair(x), ref(x)
                assert abs(float(v - v_ref)) < 1e-12
                np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), atol=1e-11)
                used.setdefault(rho, []).append(int(fast.degrees_used(table, *x)))
        assert max(used[0.1]) <= 16 and max(used[0.5]) < min(used[1.0])
        u, w = rng.normal(size=(4, 5)) * 0.4, rng.normal(size=(3, 5)) * 0.4
        K, B, W = fast.fast_grams(jnp.tanh, table, (jnp.asarray(u), jnp.asarray(w)), ((0, 0), (0, 1), (1, 1)))
        for M, x, y in ((K, u, u), (B, u, w), (W, w, w)):
            pairwise = np.array([[_gh200(jnp.tanh, xi, yj) for yj in y] for xi in x])
            np.testing.assert_allclose(np.asarray(M), pairwise, atol=1e-12)
        np.testing.assert_array_equal(np.asarray(K), np.asarray(K).T)
        # Potential.grams with leading batch axes on one set only (the teacher unbatched): each instance's own
        pot = es.potential("tanh", method="fast")
        batch = jnp.stack([jnp.asarray(u), 0.5 * jnp.asarray(u)])
        Kb, Bb = pot.grams((batch, jnp.asarray(w)), ((0, 0), (0, 1)))
        for i in range(2):
            Ki, Bi = pot.grams((batch[i], jnp.asarray(w)), ((0, 0), (0, 1)))
            np.testing.assert_allclose(np.asarray(Kb[i]), np.asarray(Ki), atol=1e-12)
            np.testing.assert_allclose(np.asarray(Bb[i]), np.asarray(Bi), atol=1e-12)


def test_fast_table_region_check_is_the_tail_bound():
    """The per-pair test ``|u.v| <= s(|u|) s(|v|)`` equals the certified bound
    ``N log|rho| + (log T'_N(|u|) + log T'_N(|v|)) / 2 <= log tol`` away from its boundary, for every truncation
    a call can stop at."""
    from earnshaw.potentials import fast
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        table = fast.build_table(jnp.tanh, odd=True)
        a, b = rng.uniform(0.05, 3.0, 4000), rng.uniform(0.05, 3.0, 4000)
        rho = rng.uniform(-1.0, 1.0, 4000)
        for blocks in (2, 8, table.blocks):
            reach = lambda n: np.asarray(fast._reach(table, jnp.asarray(n), (blocks,))[..., 0])  # noqa: E731
            fast_check = np.abs(rho * a * b) <= reach(a * a) * reach(b * b)
            rows = table.log_tail[blocks - 1]
            log_tail = lambda r: rows[np.clip(np.ceil(r * (rows.size - 1) / table.radius).astype(int), 0,  # noqa
                                              rows.size - 1)]
            margin = (table.truncation(blocks) * np.log(np.abs(rho)) + 0.5 * (log_tail(a) + log_tail(b))
                      - math.log(table.tol))
            clear = np.abs(margin) > 1e-9
            assert fast_check[margin < -1e-9].all() and 100 < fast_check.sum() < 3990
            np.testing.assert_array_equal(fast_check[clear], (margin < 0)[clear])


def test_fast_table_even_and_general_parity():
    """The series with even degrees only (x = rho^2, the rho-derivative one degree lower) and with all degrees,
    against order-200 quadrature: values, partials in (|u|^2, u.v, |v|^2); a table's default radius falls back
    from 5 where its own error would exceed tol/2 there, and asking for that radius says so."""
    from earnshaw.potentials import fast
    logcosh = lambda z: jnp.log(jnp.cosh(z))  # noqa: E731
    softplus = jax.nn.softplus
    with jax.enable_x64(True):
        for fn, odd in ((logcosh, False), (softplus, None)):
            table = fast.build_table(fn, odd=odd, terms=160)  # enough at these norms, half the build
            assert table.degrees[0] == 0 and (table.degrees[1] == 2) == (odd is False)
            # the default radius is 5 where the table's own error allows it; log cosh (coefficients that sum to
            # more) falls back to 4
            assert table.radius == (4.0 if fn is logcosh else 5.0)
            x = jnp.asarray([(0.81, 0.3, 0.64), (1.0, -0.95, 0.99), (0.5, 0.0, 1.2)])
            both = [jax.vmap(jax.value_and_grad(lambda x: f(*x)))(x) for f in (
                functools.partial(fast.fast_potential_fn, fn, table),
                functools.partial(inner.gauss_hermite, fn, fn, 200))]
            np.testing.assert_allclose(np.asarray(both[0][0]), np.asarray(both[1][0]), atol=1e-12)
            np.testing.assert_allclose(np.asarray(both[0][1]), np.asarray(both[1][1]), atol=1e-11)
        with pytest.raises(ValueError, match="own error .* exceeds tol/2 at radius=5.0; lower radius or raise tol"):
            fast.build_table(logcosh, odd=False, terms=160, radius=5.0)


def test_fast_tables_are_kept_on_disk_and_rebuilt_when_unreadable(tmp_path, monkeypatch):
    """A registry activation's table is written once to the table folder and read back (identical arrays, no
    rebuild) by a later build; a corrupt or foreign file is rebuilt; the off switch and custom functions write
    nothing."""
    from earnshaw.potentials import fast
    monkeypatch.setenv("EARNSHAW_TABLE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("EARNSHAW_TABLE_CACHE", raising=False)
    with jax.enable_x64(True):
        pot = es.potential("tanh", method="fast", tol=3e-12)  # a tol no other test uses: not in memory yet
        files = list(tmp_path.glob("*.npz"))
        assert len(files) == 1 and files[0].name.startswith("tanh-")
        built = pot.fn.args[1]
        args = dict(odd=True, tol=3e-12, terms=None, radius=None, order=es.potentials.DEFAULT_GH_ORDER,
                    cache_key=repr(("tanh", ())))

        def no_build(*a, **k):
            raise AssertionError("rebuilt a table that is on disk")
        with monkeypatch.context() as m:
            m.setattr(fast, "_build_table", no_build)
            loaded = fast.build_table.__wrapped__(jnp.tanh, **args)  # past the in-memory cache
        for name in ("degrees", "cheb", "log_tail", "self_cheb"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(built, name))
        assert (loaded.terms, loaded.tol, loaded.table_error) == (built.terms, built.tol, built.table_error)
        x = (jnp.asarray(0.81), jnp.asarray(0.5), jnp.asarray(1.0))
        assert float(fast.fast_potential_fn(jnp.tanh, loaded, *x)) == float(fast.fast_potential_fn(jnp.tanh, built, *x))

        path, ident = fast._cache_file(args["cache_key"], jnp.tanh,
                                       **{k: v for k, v in args.items() if k != "cache_key"})
        assert path == files[0]
        good = files[0].read_bytes()
        # damaged anywhere (header, compressed data, directory), a file is either still the table or refused
        for pos in np.linspace(0, len(good) - 1, 40).astype(int):
            files[0].write_bytes(good[:pos] + bytes([good[pos] ^ 0x5A]) + good[pos + 1:])
            damaged = fast._load_table(path, ident)
            assert damaged is None or np.array_equal(damaged.cheb, built.cheb)
        files[0].write_bytes(good[: len(good) // 2])  # cut short
        assert fast._load_table(path, ident) is None
        files[0].write_bytes(b"not an npz archive")
        rebuilt = fast.build_table.__wrapped__(jnp.tanh, **args)
        np.testing.assert_array_equal(rebuilt.cheb, built.cheb)
        assert fast._load_table(path, ident) is not None  # rewritten, readable again
        assert fast._load_table(path, ident.replace("tanh", "sinh")) is None  # not served under another name
        # another function under the same key (a registry activation whose definition changed) gets another file
        assert fast._cache_file(args["cache_key"], jnp.sinh, tol=3e-12)[0] != fast._cache_file(
            args["cache_key"], jnp.tanh, tol=3e-12)[0]

    monkeypatch.setenv("EARNSHAW_TABLE_CACHE", "0")
    assert fast.table_cache_folder() is None and fast._cache_file("('tanh', ())", jnp.tanh) == (None, None)
    monkeypatch.delenv("EARNSHAW_TABLE_CACHE")
    assert fast._cache_file(None, jnp.tanh) == (None, None)  # a function without a key is never cached


def test_fast_batched_sets_against_themselves_run_once_per_pair():
    """Under vmap a set's Gram matrix with itself runs as a circulant of its distinct pairs (odd and even numbers
    of units: an even one runs its last shift's pairs twice) and is put back on the square: values and all three
    partials (as a jvp in every direction of the units) equal each instance's own call, and the batched plan
    never runs fewer blocks than the full one."""
    from earnshaw.potentials import fast
    with jax.enable_x64(True):
        table = fast.build_table(jnp.tanh, odd=True)
        for n in (4, 5):
            U = 0.5 * jax.random.normal(jax.random.key(n), (8, n, 3))
            T = 0.5 * jax.random.normal(jax.random.key(10 + n), (n, 3))
            dU = jax.random.normal(jax.random.key(20 + n), U.shape)

            def grams(u, du):
                return jax.jvp(lambda x: fast.fast_grams(jnp.tanh, table, (x, T), ((0, 0), (0, 1))), (u,), (du,))
            (Kb, Bb), (tKb, tBb) = jax.jit(jax.vmap(grams))(U, dU)
            one = jax.jit(grams)

            @jax.jit
            def plans(u):
                groups, norms, cs = fast._gram_groups((u, T), ((0, 0), (0, 1)))
                return (fast._instance_blocks(table, groups, norms, cs),
                        fast._plan(table, groups, norms, cs, whole_batch=False)[1])
            for i in range(0, 8, 2):
                (K, B), (tK, tB) = one(U[i], dU[i])
                np.testing.assert_allclose(Kb[i], K, atol=1e-12)
                np.testing.assert_allclose(Bb[i], B, atol=1e-12)
                np.testing.assert_allclose(tKb[i], tK, atol=1e-11)
                np.testing.assert_allclose(tBb[i], tB, atol=1e-11)
                np.testing.assert_array_equal(Kb[i], Kb[i].T)
                batched_plan, full_plan = plans(U[i])
                assert int(batched_plan) >= int(full_plan)


def test_fast_batched_plan_is_the_full_plan_at_equal_norms_and_a_bound_otherwise():
    """A batch's per-instance plan bounds each group by its largest |rho| at its largest norms: never fewer blocks
    than checking every pair (:func:`_plan`), the same when the units of each set share one norm, and every pair
    of an instance passes its check at the truncation chosen."""
    from earnshaw.potentials import fast
    with jax.enable_x64(True):
        table = fast.build_table(jnp.tanh, odd=True)
        T = jax.random.normal(jax.random.key(1), (6, 5))
        T = T / jnp.linalg.norm(T, axis=-1, keepdims=True)

        @jax.jit
        def plans(u):
            groups, norms, cs = fast._gram_groups((u, T), ((0, 0), (0, 1)))
            return (fast._instance_blocks(table, groups, norms, cs),
                    fast._plan(table, groups, norms, cs, whole_batch=False)[1])
        U = jax.random.normal(jax.random.key(2), (24, 6, 5))
        equal = 0.9 * U / jnp.linalg.norm(U, axis=-1, keepdims=True)
        # a student unit near a teacher unit in some instances, so that the plans differ across the batch
        equal = equal.at[::3, 0].set(0.9 * (T[0] + 0.05 * U[::3, 0, :]) / jnp.linalg.norm(T[0] + 0.05 * U[::3, 0, :],
                                                                                            axis=-1, keepdims=True))
        bounded, full = jax.vmap(plans)(equal)
        np.testing.assert_array_equal(bounded, full)
        assert len(set(np.asarray(full).tolist())) > 1
        scaled = equal * jnp.linspace(0.5, 1.5, 6)[None, :, None]
        bounded, full = jax.vmap(plans)(scaled)
        assert bool(jnp.all(bounded >= full)) and bool(jnp.any(bounded > full))
        # certified: at the bound's truncation every pair of the instance passes its own check
        ladder = fast._ladder(table)
        for u, b in zip(scaled, np.asarray(bounded)):
            level = ladder.index(int(b))
            ru, rt = (fast._reach(table, jnp.sum(x * x, -1), ladder)[:, level] for x in (u, T))
            off = ~np.eye(6, dtype=bool)
            assert bool(jnp.all(jnp.where(off, jnp.abs(u @ u.T) <= ru[:, None] * ru[None, :], True)))
            assert bool(jnp.all(jnp.abs(u @ T.T) <= ru[:, None] * rt[None, :]))


def test_fast_gram_partials_batched_equal_each_instance():
    """Under vmap the partials run as the students' circulant plus students against teachers (a set of its own,
    unbatched when the teacher is): every instance's Phi and both partials equal its own call, with the
    teacher batched or not; their forward derivatives match finite differences."""
    from earnshaw.potentials import fast
    with jax.enable_x64(True):
        table = fast.build_table(jnp.tanh, odd=True)
        U = 0.6 * jax.random.normal(jax.random.key(3), (6, 5, 4))
        W = 0.6 * jax.random.normal(jax.random.key(4), (3, 4))
        Ws = W + 0.1 * jax.random.normal(jax.random.key(5), (6, 3, 4))
        part = jax.jit(functools.partial(fast.fast_gram_partials, jnp.tanh, table))
        for batched, w_of in ((jax.vmap(part, in_axes=(0, None))(U, W), lambda i: W),
                              (jax.vmap(part)(U, Ws), lambda i: Ws[i])):
            assert [x.shape for x in batched] == [(6, 5, 8)] * 3
            for i in range(6):
                for b, one in zip(batched, part(U[i], w_of(i))):
                    np.testing.assert_allclose(b[i], one, rtol=1e-11, atol=1e-12)
        # forward derivatives (a Hessian of the hand-written gradient): jacfwd batches the tangents alone
        jac = jax.jit(jax.jacfwd(lambda u: part(u, W)[2].sum()))(U[0])
        e = np.zeros(U[0].shape)
        e[1, 2] = 1e-6
        fd = (part(U[0] + e, W)[2].sum() - part(U[0] - e, W)[2].sum()) / 2e-6
        np.testing.assert_allclose(jac[1, 2], fd, rtol=1e-6)

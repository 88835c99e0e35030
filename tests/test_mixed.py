"""Per-unit activations: cross potentials against Monte Carlo and quadrature (plain and biased units, values and
exact derivatives), the mixed loss against samples, one shared activation = the plain problem exactly, finite
differences, a mixed teacher learnt by a mixed student, analyze's matching by activation, configs, and the errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es
from earnshaw import plot
from earnshaw.potentials.inner import gauss_hermite
from earnshaw.potentials.mixed import _cross_rule, _cross_rule_biased, cross

NU, C, NV, BU, BV = 0.8, 0.35, 1.3, 0.4, -0.3


@pytest.fixture(scope="module")
def pairs_sample():
    """One fixed sample of ``(U, V)`` with covariance ``[[NU, C], [C, NV]]`` (centred), shared by every pair."""
    L = np.linalg.cholesky(np.array([[NU, C], [C, NV]]))
    z = np.random.default_rng(0).standard_normal((2_000_000, 2)) @ L.T
    return jnp.asarray(z[:, 0]), jnp.asarray(z[:, 1])


# every rule of mixed.py, plain and biased: (s, t, rule without biases, rule with biases)
PAIRS = [("erf", "sign", "probit", "probit"), ("step", "normal_cdf", "probit", "probit"),
         ("relu", "abs", "piecewise-linear", "piecewise-linear"),
         ("leaky_relu", "linear", "piecewise-linear", "piecewise-linear"),
         ("erf", "relu", "stein", "piecewise-linear x probit"), ("relu", "step", "stein", "piecewise-linear x probit"),
         ("tanh", "relu", "stein", "conditional"), ("sigmoid", "gelu", "stein", "quadrature"),
         ("tanh", "quadratic", "stein", "quadrature"), ("relu", "gelu", "conditional", "conditional"),
         ("sign", "exp", "conditional", "conditional"), ("relu2", "tanh", "conditional", "conditional"),
         ("tanh", "softplus", "stein", "quadrature"), ("gelu", "exp", "quadrature", "quadrature")]


def _args(biased):
    return [jnp.asarray(x) for x in ((NU, C, NV, BU, BV) if biased else (NU, C, NV))]


@pytest.mark.parametrize("biased", [False, True], ids=["plain", "biased"])
@pytest.mark.parametrize("s,t,rule,rule_biased", PAIRS, ids=[f"{p[0]}-{p[1]}" for p in PAIRS])
def test_cross_potential_against_monte_carlo_with_exact_derivatives(pairs_sample, s, t, rule, rule_biased, biased):
    p, q = es.potential(s), es.potential(t)
    fn, how = (_cross_rule_biased if biased else _cross_rule)(p, q, 128)
    assert how == (rule_biased if biased else rule)
    args = _args(biased)
    U, V = pairs_sample
    prod = p.activation.fn(U + BU * biased) * q.activation.fn(V + BV * biased)
    mc, se = float(prod.mean()), float(prod.std()) / np.sqrt(prod.size)
    assert abs(float(fn(*args)) - mc) < 5 * se + 1e-12, (float(fn(*args)), mc, se)
    # swapping the two units swaps the arguments
    back = (_cross_rule_biased if biased else _cross_rule)(q, p, 128)[0]
    assert abs(float(back(*(args[2::-1] + args[:2:-1]))) - float(fn(*args))) < 1e-13
    # derivatives in every argument against central differences
    grad = np.array(jax.grad(lambda *x: fn(*x), argnums=tuple(range(len(args))))(*args))
    eps = 1e-6
    fd = [(float(fn(*[x + eps * (i == j) for i, x in enumerate(args)]))
           - float(fn(*[x - eps * (i == j) for i, x in enumerate(args)]))) / (2 * eps) for j in range(len(args))]
    assert np.abs(grad - np.array(fd)).max() < 1e-8


@pytest.mark.parametrize("s,t", [("erf", "tanh"), ("tanh", "relu"), ("erf", "relu"), ("relu", "gelu"),
                                 ("erf", "gelu")])
def test_closed_and_conditional_rules_agree_with_high_order_quadrature(s, t):
    # the same numbers as 2-D Gauss-Hermite where that converges (slowly for a kink, hence the looser bound; a
    # jump, as in sign or step, is left to the Monte Carlo test)
    p, q = es.potential(s), es.potential(t)
    nu, c, nv = jnp.array([0.3, 1.0, 2.0]), jnp.array([0.1, -0.6, 1.2]), jnp.array([1.5, 0.7, 1.1])
    ours = np.asarray(cross(p, q)(nu, c, nv))
    ref = np.asarray(gauss_hermite(p.activation.fn, q.activation.fn, 300, nu, c, nv))
    tol = 1e-10 if p.activation.smooth and q.activation.smooth else 3e-3
    assert np.abs(ours - ref).max() < tol


def _mixed_setup(bias_scale=None, order=48):
    """Three student units (erf, relu, tanh) against four teacher units (relu, sign, erf, tanh): closed forms,
    conditional sums and quadrature (tanh with itself); the quadratures at a modest order keep the programs small."""
    t = es.random_teacher(jax.random.key(0), d=3, k=4, scale=0.6, bias_scale=bias_scale)
    s = es.random_student(jax.random.key(1), d=3, k=3, scale=0.6, bias_scale=bias_scale)
    tanh = es.potential("tanh", order=order)
    pot = es.mixed_potential(["erf", "relu", tanh], teacher=["relu", "sign", "erf", tanh], order=order)
    return pot, t, s


@pytest.mark.parametrize("bias_scale", [None, 0.5], ids=["plain", "biased"])
def test_mixed_loss_against_monte_carlo(bias_scale):
    pot, t, s = _mixed_setup(bias_scale)
    x = jax.random.normal(jax.random.key(2), (1_000_000, 3))
    f = sum(t.b[j] * pot.teacher[j].activation.fn(x @ t.w[j] + (0.0 if t.bias is None else t.bias[j]))
            for j in range(4))
    g = sum(s.a[i] * pot.student[i].activation.fn(x @ s.theta[i] + (0.0 if s.bias is None else s.bias[i]))
            for i in range(3))
    err2 = (f - g) ** 2
    se = float(err2.std()) / np.sqrt(err2.size)
    exact = float(jax.jit(es.population_loss, static_argnums=0)(pot, t, s))
    assert abs(exact - float(err2.mean())) < 5 * se
    # empirical_loss evaluates each unit with its own activation
    assert abs(float(es.empirical_loss(pot, t, s, x)) - float(err2.mean())) < 1e-10 * float(err2.mean())


def test_mixed_loss_against_pairwise_quadrature():
    # smooth activations: every Gram entry by 2-D Gauss-Hermite, one pair at a time
    t = es.random_teacher(jax.random.key(0), d=3, k=3, scale=0.6)
    s = es.random_student(jax.random.key(1), d=3, k=2, scale=0.6)
    st, tt = ["erf", "tanh"], ["gelu", "erf", "sigmoid"]
    pot = es.mixed_potential(st, teacher=tt)

    def phi(a, u, b, v):
        fa, fb = es.activation(a).fn, es.activation(b).fn
        return float(gauss_hermite(fa, fb, 200, u @ u, u @ v, v @ v))

    units = [(a, th, q) for a, th, q in zip(st, s.theta, s.a)] + [(b, w, -q) for b, w, q in zip(tt, t.w, t.b)]
    ref = sum(qi * qj * phi(ai, ui, aj, uj) for ai, ui, qi in units for aj, uj, qj in units)
    assert abs(float(es.population_loss(pot, t, s)) - ref) < 1e-10


@pytest.mark.parametrize("name", ["erf", "relu", "tanh"])
def test_one_shared_activation_is_the_plain_problem_exactly(name):
    t = es.random_teacher(jax.random.key(0), d=3, k=3, scale=0.6)
    s = es.random_student(jax.random.key(1), d=3, k=2, scale=0.6)
    plain = es.potential(name, order=32) if name == "tanh" else es.potential(name)
    pot = es.mixed_potential([plain] * 2, teacher=[plain] * 3)
    for fn in (es.population_loss, es.reduced_loss, es.regularised_loss):  # compiled, as every solver runs them
        fn = jax.jit(fn, static_argnums=0)
        assert float(fn(pot, t, s)) == float(fn(plain, t, s))
    tb = es.Teacher(b=t.b, w=t.w, bias=jnp.array([0.3, -0.2, 0.1]))
    sb = es.Student(a=s.a, theta=s.theta, bias=jnp.array([0.5, -0.4]))
    loss = jax.jit(es.population_loss, static_argnums=0)
    assert float(loss(pot, tb, sb)) == float(loss(plain, tb, sb))
    assert float(es.optimal_loss(pot, t, s.theta)) == pytest.approx(float(es.optimal_loss(plain, t, s.theta)),
                                                                     abs=1e-13)
    if name == "erf":  # in a Problem: autodiff equals erf's hand-derived value and gradient up to rounding
        (vm, gm), (vp, gp) = es.Problem(pot, t).value_and_grad(s), es.Problem(plain, t).value_and_grad(s)
        assert abs(float(vm) - float(vp)) < 1e-14 and np.abs(np.asarray(gm.theta - gp.theta)).max() < 1e-13


def test_gradients_against_finite_differences():
    # through a whole problem, units interleaved (each rule's derivatives are checked pair by pair above)
    t = es.random_teacher(jax.random.key(0), d=3, k=3, scale=0.6, bias_scale=0.5)
    s = es.random_student(jax.random.key(1), d=3, k=2, scale=0.6, bias_scale=0.5)
    pot = es.mixed_potential(["erf", "relu"], teacher=["relu", "erf", "relu"])
    for problem, student in ((es.Problem(pot, es.Teacher(b=t.b, w=t.w)), es.Student(a=s.a, theta=s.theta)),
                             (es.Problem(pot, t), s)):
        p = problem.for_student(student)
        x = p.flatten(student)
        vg = jax.jit(jax.value_and_grad(p.f))  # one program for both (op by op, the biased forms take seconds)
        g = np.asarray(vg(x)[1])
        eps = 1e-6
        fd = np.array([(float(vg(x.at[i].add(eps))[0]) - float(vg(x.at[i].add(-eps))[0])) / (2 * eps)
                       for i in range(x.size)])
        assert np.abs(g - fd).max() < 1e-8 * max(1.0, np.abs(g).max())


def test_a_mixed_teacher_is_learnt_by_a_student_with_the_same_activations():
    t = es.random_teacher(jax.random.key(0), d=3, k=2, scale=3**-0.5)
    problem = es.Problem(["erf", "relu"], t)
    starts = es.random_student(jax.random.key(1), d=3, k=2, scale=3**-0.5, batch=4)
    traj = es.gradient_descent(problem, starts, lr=0.2, max_steps=2000)
    best = int(np.argmin(np.asarray(traj.final_loss)))
    assert float(traj.final_loss[best]) < 1e-12 < float(traj.losses[best, 0])
    end = jax.tree_util.tree_map(lambda x: x[best], traj.final)
    # unit 0 (erf) is the teacher's erf unit up to its sign flip; unit 1 (relu) its relu unit up to scale
    sign = np.sign(float(end.a[0] * t.b[0]))
    assert np.allclose(sign * np.asarray(end.theta[0]), np.asarray(t.w[0]), atol=1e-5)
    cosine = float(end.theta[1] @ t.w[1] / jnp.linalg.norm(end.theta[1]) / jnp.linalg.norm(t.w[1]))
    assert cosine > 1 - 1e-8
    assert abs(float(end.a[1] * jnp.linalg.norm(end.theta[1]) - t.b[1] * jnp.linalg.norm(t.w[1]))) < 1e-5


def test_analyze_matches_units_of_the_same_activation_only():
    t = es.random_teacher(jax.random.key(0), d=3, k=2, scale=0.6)
    pot = es.mixed_potential(["erf", "tanh"])
    rep = es.analyze(pot, t, es.Student(a=t.b, theta=t.w))
    assert str(rep.verdict) == "global minimum" and int(rep.recovered) == 2
    # the units in each other's places: the erf unit cannot stand for the tanh unit
    swapped = es.Student(a=t.b[::-1], theta=t.w[::-1])
    idx, _, _ = es.match_units(swapped.theta, swapped.a, t.w, t.b, allowed=np.eye(2, dtype=bool))
    assert idx.tolist() == [0, 1]
    idx, dist, _ = es.match_units(swapped.theta, swapped.a, t.w, t.b)
    assert idx.tolist() == [1, 0] and float(dist.max()) == 0.0


def test_potential_of_a_list_and_the_records():
    pot = es.potential(["erf", "relu"])
    assert pot is es.mixed_potential(["erf", "relu"]) is es.mixed_potential(["erf", "relu"], teacher=["erf", "relu"])
    assert pot.kind == "mixed" and pot.bounded and pot.activation is None
    assert pot.rules() == {("erf", "erf"): "same", ("erf", "relu"): "stein", ("relu", "relu"): "same"}
    # units interleaved: gathers put the blocks back in unit order
    mixed = es.mixed_potential(["relu", "erf", "relu", "sign"], teacher=["erf"])
    U = jax.random.normal(jax.random.key(3), (4, 3))
    V = jax.random.normal(jax.random.key(4), (1, 3))
    G = np.asarray(mixed.self_gram(U))
    names = ["relu", "erf", "relu", "sign"]
    for i in range(4):
        for j in range(4):
            assert G[i, j] == pytest.approx(float(cross(names[i], names[j])(U[i] @ U[i], U[i] @ U[j], U[j] @ U[j])),
                                            abs=1e-14)
    assert np.asarray(mixed.gram(U, V)).shape == (4, 1)
    assert len(plot.potential_profile(mixed).axes) == 2


def test_config_round_trip_and_cell_ids():
    from earnshaw.experiments.config import ConfigError, parse_config, stable_hash, to_toml
    import tomllib

    base = dict(activation="erf", seeds=2, teacher=dict(d=3, k=2))
    # unset, the new keys leave cell ids as they were (the hash from before per-unit activations existed)
    assert stable_hash(parse_config(base).cell_dict()) == \
        "38415b9b2bed07be590d0d13f29a06b6820c8cfb6989d4367eb97db0c0e833b6"
    cfg = parse_config(dict(base, teacher=dict(d=3, k=2, activation=["tanh", "sigmoid"]),
                            student=dict(k=3, activation=["sigmoid", "tanh", "tanh"]),
                            potential_options=dict(order=64)))
    assert parse_config(tomllib.loads(to_toml(cfg))) == cfg
    pot = cfg.build_potential()
    assert [p.name for p in pot.student] == ["sigmoid", "tanh", "tanh"]
    assert [p.name for p in pot.teacher] == ["tanh", "sigmoid"]
    # potential_options set each activation's own quadrature and that of the mixed pairs
    assert pot.order == 64 and dict(pot.student[1].params)["order"] == 64
    assert cfg.potential_name == "mixed(sigmoid,tanh,tanh|tanh,sigmoid)"
    assert cfg.cell_dict()["teacher"]["activation"] == ["tanh", "sigmoid"]
    # one name for a side: a teacher of another activation than the student
    other = parse_config(dict(base, teacher=dict(d=3, k=2, activation="tanh")))
    assert [p.name for p in other.build_potential().teacher] == ["tanh", "tanh"]
    assert [p.name for p in other.build_potential().student] == ["erf", "erf"]
    bad = [(dict(teacher=dict(d=3, k=2, activation=["erf", "foo"])), r"teacher.activation: activation\[1\]: unknown "
            "activation 'foo'; valid: abrelu"),
           (dict(teacher=dict(d=3, k=2, activation=["erf"])), "one name per teacher unit \\(k=2\\), got 1"),
           (dict(student=dict(activation=["erf", "erf", "erf"])), "one name per student unit \\(2\\), got 3"),
           (dict(activation=None, potential="gaussian", student=dict(activation="erf")), "radial potential")]
    for change, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse_config(dict(base, **change))


def test_errors_name_the_argument_and_the_lengths():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    s = es.random_student(jax.random.key(1), d=3, k=3)
    with pytest.raises(ValueError, match=r"student\[1\]: unknown activation 'foo'; valid names: abrelu, abs"):
        es.mixed_potential(["erf", "foo"])
    with pytest.raises(ValueError, match=r"teacher\[0\]: .*gaussian.* is not the potential of an inner-product"):
        es.mixed_potential(["erf"], teacher=[es.potential("gaussian")])
    with pytest.raises(ValueError, match=r"mixed_potential\(teacher=...\) gives 3 activations \(one list, for student "
                                         r"and teacher alike\), but the teacher has 2 units"):
        es.Problem(["erf", "relu", "tanh"], t)
    with pytest.raises(ValueError, match=r"mixed_potential\(student=...\) gives 2 activations, but the student has 3"):
        es.population_loss(es.mixed_potential(["erf", "relu"], teacher=["erf", "erf"]), t, s)
    with pytest.raises(ValueError, match=r"a list of activations \(one per unit\) takes only order="):
        es.potential(["erf", "tanh"], method="fast")
    with pytest.raises(ValueError, match="gradient='closed_form'|no closed-form gradient"):
        es.Problem(["erf", "erf"], t, gradient="closed_form")
    pot = es.potential(["erf", "relu"])
    s2 = es.random_student(jax.random.key(1), d=3, k=2)
    refusals = [lambda: es.nodewise_descent(jax.random.key(0), pot, t, k=2),
                lambda: es.electron_velocity(pot, t, s2), lambda: es.theorem5_residual(pot, t, s2),
                lambda: es.order_loss(pot, jnp.eye(2), t.b, es.order_parameters(t, s2)[0]),
                lambda: es.online_sgd(jax.random.key(0), pot, t, s2),
                lambda: es.census(es.Problem(pot, t), s2), lambda: es.certify(es.Problem(pot, t), s2)]
    for call in refusals:
        with pytest.raises(ValueError, match="works with one potential for all units.*gradient_descent, gradient_flow"):
            call()

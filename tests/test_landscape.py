"""Landscape: Hessian symmetry, classification of known points, matching, Laplacians."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es


def test_global_minimum_classified_with_psd_hessian():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    rep = es.analyze("erf", t, es.Student(a=t.b, theta=t.w))
    assert str(rep.verdict) == "global minimum" and int(rep.recovered) == 2
    assert float(rep.lambda_min) > -1e-10
    H = es.hessian("erf", t, es.Student(a=t.b, theta=t.w))
    np.testing.assert_allclose(H, H.T, atol=1e-12)


def test_sign_symmetry_in_matching_for_odd_activations():
    t = es.random_teacher(jax.random.key(1), d=3, k=2)
    flipped = es.Student(a=t.b * jnp.array([-1.0, 1.0]), theta=t.w * jnp.array([[-1.0], [1.0]]))
    assert float(es.population_loss("erf", t, flipped)) < 1e-14
    rep = es.analyze("erf", t, flipped)
    assert int(rep.recovered) == 2 and str(rep.verdict) == "global minimum"
    rep_relu = es.analyze("relu", t, flipped)
    assert int(rep_relu.recovered) == 1


def test_saddle_classified():
    # gaussian potential, one electron at the midpoint between two equal protons on a line:
    # by symmetry a critical point in theta, and a saddle (it can fall toward either proton)
    t = es.Teacher(b=jnp.array([1.0, 1.0]), w=jnp.array([[-1.5, 0.0], [1.5, 0.0]]))
    s = es.Student(a=jnp.array([1.0]), theta=jnp.array([[0.0, 0.0]]))
    a_opt = es.optimal_a("gaussian", t, s.theta)
    s = es.Student(a=a_opt, theta=s.theta)
    rep = es.analyze("gaussian", t, s)
    assert float(rep.grad_norm) < 1e-12
    assert str(rep.verdict) == "saddle" and float(rep.lambda_min) < 0


def test_lemma29_single_node_minimum_value():
    # Lemma 29 example (sign activation on the circle, docs/math.md section 6): t=1.9+pi is a local
    # minimum of the single-node loss with optimal a; with a free unit it is not a global minimum.
    s_ang = jnp.array([0.3, 1.9, 4.0])
    w = jnp.stack([jnp.cos(s_ang), jnp.sin(s_ang)], -1)
    t = es.Teacher(b=jnp.array([0.8, -0.5, 0.35]), w=w)
    # one student unit at w_2 with optimal charge: a spurious local minimum of the sphere problem (k=1 < 3)
    th = w[1:2]
    a = es.optimal_a("sign", t, th)
    rep = es.analyze("sign", t, es.Student(a=a, theta=th))
    # sign's potential is not differentiable at theta = w_j; the a-gradient vanishes
    assert abs(float(rep.loss) - (float(t.b @ es.potential("sign").gram(w, w) @ t.b) - 0.400422)) < 1e-5


def test_spurious_local_minimum_verdict_erf():
    # A one-unit student against a two-unit teacher with opposite units: gradient flow converges
    # to a point that is a local (not global) minimum of the under-parameterised problem.
    t = es.Teacher(b=jnp.array([1.0, 1.0]), w=jnp.array([[1.0, 0.0], [0.0, 1.0]]))
    s = es.Student(a=jnp.array([1.0]), theta=jnp.array([[0.5, 0.6]]))
    traj = es.gradient_flow("erf", t, s, t1=1e4, gtol=1e-10)
    p, gn = es.refine("erf", t, traj.final)
    rep = es.analyze("erf", t, p)
    assert float(gn) < 1e-10
    assert str(rep.verdict) == "spurious local minimum" and float(rep.lambda_min) > 0


def test_laplacians_zero_for_coulomb_away_from_charges():
    key = jax.random.key(2)
    t = es.random_teacher(key, d=3, k=2)
    s = es.random_student(jax.random.key(3), d=3, k=3)
    pot = es.potential("coulomb", d=3)
    H = es.hessian(pot, t, s)
    from earnshaw.landscape.hessian import laplacians
    lap = laplacians(H, 3, 3)
    assert float(jnp.max(jnp.abs(lap))) < 1e-9 * float(jnp.max(jnp.abs(H)))
    rep = es.analyze(pot, t, s)
    assert rep.laplacians.shape == (3,)


def test_cluster_laplacian_formula_yukawa():
    """Theorem 11: at optimal a, moving one electron cluster has Laplacian -2 lam (sum a)^2 (natural sign same)."""
    lam = 1.3
    pot = es.potential("yukawa", d=3, lam=lam)
    t = es.Teacher(b=jnp.array([0.8, -0.5]), w=jnp.array([[0.0, 1.5, 0.0], [1.2, -1.0, 0.9]]))
    th = jnp.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    # at any charges a, moving electron 1 alone: Laplacian = 2 lam a_1 (a_2 K_12 - sum_j b_j B_1j)
    K = pot.self_gram(th)
    a = jnp.array([0.7, -0.4])
    f = lambda v: es.reduced_loss(pot, t, es.Student(a=a, theta=th.at[0].add(v)))  # noqa: E731
    lap = float(jnp.trace(jax.hessian(f)(jnp.zeros(3))))
    B = pot.gram(th, t.w)
    expected = 2 * lam * a[0] * (a[1] * K[0, 1] - B[0] @ t.b)
    assert lap == pytest.approx(float(expected), rel=1e-9)


def test_refine_reaches_machine_precision_and_warns_on_float32():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    near = es.Student(a=t.b + 1e-2, theta=t.w - 1e-2)
    s, gn = es.refine("erf", t, near)
    assert float(gn) < 1e-12
    with pytest.warns(RuntimeWarning, match="float64"):
        es.hessian("erf", es.Teacher(b=t.b.astype(jnp.float32), w=t.w.astype(jnp.float32)),
                   es.Student(a=near.a.astype(jnp.float32), theta=near.theta.astype(jnp.float32)))


def test_batched_analyze_matches_single():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    s = es.random_student(jax.random.key(1), d=3, k=2, batch=4)
    rep = es.analyze("erf", t, s)
    one = es.analyze("erf", t, es.Student(a=s.a[2], theta=s.theta[2]))
    assert rep.eigenvalues.shape == (4, 8)
    np.testing.assert_allclose(rep.eigenvalues[2], one.eigenvalues, atol=1e-12)
    assert rep.verdict[2] == one.verdict
    assert len(rep.rows()) == 4 and set(rep.fractions()) >= {"saddle", "recovered all units"}


def test_match_units_hungarian():
    theta = np.array([[0.0, 1.0], [1.0, 0.0], [5.0, 5.0]])
    idx, dist, cerr = es.match_units(theta, np.ones(3), np.eye(2), np.ones(2))
    assert idx.tolist() == [1, 0, -1]
    assert np.isinf(dist[2])

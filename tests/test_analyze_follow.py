"""``analyze(follow=True)``: plateau points followed to their saddle, runs escaping to infinity told apart."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es
from earnshaw.landscape.analyze import VERDICTS, _escaping


def test_a_point_near_a_saddle_is_followed_to_it_and_reported_with_its_index(getkey):
    t = es.random_teacher(getkey(), d=3, k=2)
    # erf is odd: a = 0, theta = 0 is a critical point with negative curvature (a saddle); start near it
    near = es.Student(a=1e-3 * jax.random.normal(getkey(), (2,)), theta=1e-3 * jax.random.normal(getkey(), (2, 3)))
    plain = es.analyze("erf", t, near, gtol=1e-9)
    assert str(plain.verdict) == "not converged"
    rep = es.analyze("erf", t, near, gtol=1e-9, follow=True)
    assert str(rep.verdict) == "saddle" and float(rep.followed) > 0
    # independently of analyze: the point it reports is critical, and its index is the Hessian's count
    g = es.Problem("erf", t).grad(rep.point)
    assert float(jnp.sqrt(jnp.sum(g.a ** 2) + jnp.sum(g.theta ** 2))) < 1e-9
    eig = np.linalg.eigvalsh(np.asarray(es.Problem("erf", t).hessian(rep.point)))
    assert rep.rows()[0]["index"] == int(np.sum(eig < -1e-6)) >= 1
    assert rep.rows()[0]["escape_i"] == -1


def test_escaping_pairs_are_found_by_their_signature():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(3, 4, 5))
    a = np.array([[1.0, 0.5, -0.7, 0.3]] * 3)
    # point 0: units 1 and 3 merge (1% apart), weights +6.7 and -7.4 (opposite, mostly cancelling)
    theta[0, 3] = theta[0, 1] + 0.01 * rng.normal(size=5) / math.sqrt(5)
    a[0, 1], a[0, 3] = 6.7, -7.4
    # point 1: the same pair written with the odd symmetry (-a, -theta) for unit 3
    theta[1] = theta[0]
    theta[1, 3] = -theta[0, 3]
    a[1] = a[0]
    a[1, 3] = 7.4
    # point 2: units merge but their weights add up (same sign): no escape, a plain double unit
    theta[2] = theta[0]
    a[2] = a[0]
    a[2, 3] = 7.4
    pair, dist, w = _escaping(a, theta, odd=True)
    assert pair[0].tolist() == [1, 3] and pair[1].tolist() == [1, 3] and pair[2].tolist() == [-1, -1]
    assert dist[0] == pytest.approx(np.linalg.norm(theta[0, 1] - theta[0, 3]))
    assert w[1].tolist() == [6.7, -7.4]  # reported as (a_i, s a_j), s the sign that merges them
    # without the odd symmetry, point 1's pair is 2|theta| apart: not merging
    assert _escaping(a, theta, odd=False)[0][1].tolist() == [-1, -1]


@pytest.mark.slow
def test_the_researchers_erf_case_is_escaping_not_unexplained():
    """erf, d = 6, k = 4, a teacher unit with output weight 0.046: runs end near loss 1e-4 with a merging pair."""
    t = es.random_teacher(jax.random.key(0), d=6, k=4, scale=1 / math.sqrt(6))
    t = es.Teacher(b=t.b.at[0].set(0.046), w=t.w)
    keys = jax.random.split(jax.random.key(1), 24)[jnp.array([16, 20])]
    s = jax.vmap(lambda k_: es.random_student(k_, 6, 4, scale=1 / math.sqrt(6)))(keys)
    tr = es.gradient_flow("erf", t, s, t1=1e6, gtol=1e-8, rtol=1e-3, atol=1e-5, solver="kvaerno3", max_steps=5000,
                          on_divergence="warn")
    pol, _ = es.refine("erf", t, tr.final)
    old = es.analyze("erf", t, pol, gtol=1e-9)
    rep = es.analyze("erf", t, pol, gtol=1e-9, follow=True)
    assert (old.verdict == "not converged").all() and (rep.verdict == "escaping").all()
    loss = np.asarray(rep.loss)
    assert ((loss > 1e-5) & (loss < 1e-3)).all()  # stuck well above zero, well below the start
    for i in range(2):
        p, q = rep.escape_pair[i]
        th = np.asarray(rep.point.theta[i])  # the point analysed (follow may have polished it further)
        merged = min(np.linalg.norm(th[p] - th[q]), np.linalg.norm(th[p] + th[q]))
        assert merged == pytest.approx(rep.escape_distance[i]) and merged < 0.1 * np.linalg.norm(th[p])
        assert rep.escape_weights[i][0] * rep.escape_weights[i][1] < 0


def test_verdicts_keep_their_order():
    assert VERDICTS[:4] == ("global minimum", "spurious local minimum", "saddle", "not converged")
    assert VERDICTS[4] == "escaping"

"""census: distinct critical points modulo symmetry, their Hessian index and basin fractions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es
from earnshaw.landscape.census import coordinate_permutations, symmetric_distance


def test_copies_of_a_minimum_and_of_a_saddle_make_two_families():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    perm = jnp.array([1, 0])
    minimum = [es.Student(a=t.b, theta=t.w), es.Student(a=t.b[perm], theta=t.w[perm]),
               es.Student(a=-t.b, theta=-t.w)]  # erf is odd: flipping a unit's sign is the same network
    near = es.Student(a=t.b + 1e-4, theta=t.w - 1e-4)  # Newton polishes it onto the minimum
    saddle = es.Student(a=jnp.zeros(2), theta=jnp.zeros((2, 3)))  # a critical point of every odd activation
    # (the critical set through it is not isolated: a perturbed copy polishes to another of its points)
    pts = minimum + [near, saddle, saddle]
    batch = es.Student(a=jnp.stack([p.a for p in pts]), theta=jnp.stack([p.theta for p in pts]))
    c = es.census("erf", t, batch)
    assert len(c.families) == 2 and c.n == 6
    best, sad = c.families
    assert best.kind == "global minimum" and best.index == 0 and best.seeds == (0, 1, 2, 3)
    assert sad.kind == "saddle" and sad.index > 0 and sad.lambda_min < -1e-3 and sad.seeds == (4, 5)
    assert c.family_of.tolist() == [0, 0, 0, 0, 1, 1]
    assert best.fraction == pytest.approx(4 / 6) and best.interval[0] < 4 / 6 < best.interval[1]
    assert 0.0 < sad.interval[0] and sad.interval[1] < 1.0
    assert "global minimum" in str(c) and len(c.rows()) == 2
    # without the sign symmetry (relu is not odd) the flipped copy is a different point
    assert symmetric_distance(minimum[0], minimum[2], odd=True) < 1e-12
    assert symmetric_distance(minimum[0], minimum[2], odd=False) > 0.1


def test_teacher_symmetries_merge_images_of_a_point():
    """w_j = e_j, b = 1: permuting input coordinates maps the loss to itself, so a point and its image are one
    critical point up to the teacher's symmetry, and two without it."""
    d = 3
    t = es.Teacher(b=jnp.ones(d), w=jnp.eye(d))
    x = es.random_student(jax.random.key(4), d=d, k=d)
    image = es.Student(a=x.a, theta=x.theta[:, jnp.array([1, 0, 2])])
    pts = es.Student(a=jnp.stack([x.a, image.a]), theta=jnp.stack([x.theta, image.theta]))
    assert float(es.population_loss("relu", t, x)) == pytest.approx(float(es.population_loss("relu", t, image)))
    plain = es.census("relu", t, pts, refine=False)
    merged = es.census("relu", t, pts, refine=False, symmetries=coordinate_permutations(d))
    assert len(plain.families) == 2 and len(merged.families) == 1
    assert merged.families[0].kind == "not converged"  # a random point is no critical point


@pytest.mark.parametrize("odd", [False, True])
def test_whole_coordinate_group_matched_directly_at_d_12(odd):
    """At d = 12 the orbit of a point has up to 12! images: census matches units and coordinates directly.
    An image under random unit and coordinate permutations (and unit flips for an odd activation) is found
    at distance 0; the permutation-invariant summaries never exceed the distance, so they only rule out."""
    from earnshaw.landscape.census import _invariants, _match_units_and_coordinates

    rng = np.random.default_rng(3)
    d = 12
    x = es.Student(a=jnp.asarray(rng.normal(size=d)), theta=jnp.asarray(rng.normal(size=(d, d))))
    rows, cols = rng.permutation(d), rng.permutation(d)
    flips = rng.choice([-1.0, 1.0], size=d) if odd else np.ones(d)
    image = es.Student(a=x.a[rows] * flips, theta=x.theta[rows][:, cols] * flips[:, None])
    assert _match_units_and_coordinates(x, image, odd) < 1e-12
    other = es.Student(a=x.a, theta=x.theta + 0.05 * jnp.asarray(rng.normal(size=(d, d))))
    assert _match_units_and_coordinates(x, other, odd) == np.inf  # no image: refused, not approximated
    gap = symmetric_distance(x, other, odd=odd)  # an upper bound on the distance modulo the group
    assert all(np.linalg.norm(u - v) <= gap + 1e-12 for u, v in zip(_invariants(x, odd), _invariants(other, odd)))
    # a symmetric point (units that tie under every summary) and a permuted image of it: still found
    sym = np.full((d, d), 0.1) + np.diag(np.r_[np.full(6, 0.9), np.full(6, 0.5)])
    sym[0, 1] = sym[1, 0] = -0.3
    s1 = es.Student(a=jnp.ones(d), theta=jnp.asarray(sym))
    s2 = es.Student(a=jnp.ones(d), theta=jnp.asarray(sym[rows][:, cols] + 1e-10))
    assert _match_units_and_coordinates(s1, s2, odd) < 1e-8
    t = es.Teacher(b=jnp.ones(d), w=jnp.eye(d))
    pts = es.Student(a=jnp.stack([x.a, image.a, other.a]), theta=jnp.stack([x.theta, image.theta, other.theta]))
    cen = es.census("erf" if odd else "relu", t, pts, refine=False, analyze_all=False,
                    symmetries=coordinate_permutations(d))
    assert cen.family_of.tolist()[:2] == [cen.family_of[0]] * 2 and cen.family_of[2] != cen.family_of[0]


def test_census_over_theta_with_fixed_output_weights_counts_gd_end_points():
    """The soft committee machine (a fixed at 1, relu, w_j = e_j): GD's end points, grouped over theta alone;
    every start is in exactly one family and the fractions add up to 1."""
    d = k = 3
    t = es.Teacher(b=jnp.ones(k), w=jnp.eye(d))
    problem = es.Problem("relu", t, train="theta")
    s = es.random_student(jax.random.key(1), d=d, k=k, scale=d**-0.5, batch=16)
    s = es.Student(a=jnp.ones((16, k)), theta=s.theta)
    end = es.gradient_descent(problem, s, lr=0.1, max_steps=20_000).final
    c = es.census(problem, end, symmetries=coordinate_permutations(d))
    assert sum(len(f.seeds) for f in c.families) == 16
    assert sum(f.fraction for f in c.families) == pytest.approx(1.0)
    assert sorted(np.concatenate([f.seeds for f in c.families]).tolist()) == list(range(16))
    gm = [f for f in c.families if f.kind == "global minimum"]
    assert len(gm) == 1 and gm[0].recovered == k and gm[0].loss < 1e-12
    for f in c.families:
        assert f.point.a.tolist() == [1.0] * k  # output weights stayed fixed
        assert f.kind != "not converged" or f.grad_norm > 1e-9


def test_census_rejects_bad_input():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    with pytest.raises(ValueError, match="batch of points"):
        es.census("erf", t, es.Student(a=t.b, theta=t.w))
    tb = es.random_teacher(jax.random.key(0), d=3, k=2, batch=2)
    with pytest.raises(ValueError, match="one teacher"):
        es.census("erf", tb, es.random_student(jax.random.key(1), d=3, k=2, batch=2))


def test_end_points_short_of_a_critical_point_join_its_family_once_polished():
    """analyze_all=False groups the end points as they are: two that stopped 1e-4 apart near one isolated
    spurious minimum are two groups at tol = 1e-6, and become one family once the representatives are polished."""
    t = es.Teacher(b=jnp.array([1.0, -0.5]), w=jnp.array([[1.0, 0.0], [0.3, 0.8]]))
    problem = es.Problem("erf", t, train="theta")
    start = es.Student(a=t.b, theta=jnp.array([[0.169, -0.2805], [-1.6957, 0.0088]]))  # near a spurious minimum
    p, gn = es.refine(problem, start, max_steps=50)
    assert float(gn) < 1e-12
    shift = 1e-4 * jnp.array([[1.0, -2.0], [0.5, 1.0]])
    x0 = es.Student(a=p.a, theta=p.theta + shift)
    x1 = es.Student(a=p.a[::-1], theta=p.theta[::-1] - shift[::-1])  # units permuted, shifted the other way
    assert symmetric_distance(x0, x1) > 1e-4
    pts = es.Student(a=jnp.stack([x0.a, x1.a]), theta=jnp.stack([x0.theta, x1.theta]))
    c = es.census(problem, pts, analyze_all=False, tol=1e-6)
    assert len(c.families) == 1 and c.families[0].seeds == (0, 1) and c.families[0].kind == "spurious local minimum"
    assert c.family_of.tolist() == [0, 0]
    # the same for the global minimum: a point short of it joins the zero-loss family once polished
    g = es.Student(a=jnp.stack([t.b, t.b]), theta=jnp.stack([t.w, t.w + 1e-3]))
    c = es.census(es.Problem("erf", t, train="theta"), g, analyze_all=False, tol=1e-6)
    assert [f.kind for f in c.families] == ["global minimum"] and c.families[0].seeds == (0, 1)

"""Dynamics: flow monotone, GD tracks the flow, Earnshaw dynamics, SecondGD/HD/node-wise, batching, errors."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es
from earnshaw.dynamics import nodewise


def _flat(s):
    """A student (any batch axes) as flat vectors ``[a, theta.ravel()]``."""
    return jnp.concatenate([s.a, s.theta.reshape(*s.theta.shape[:-2], -1)], axis=-1)


@pytest.fixture(scope="module")
def easy():
    """A well-posed erf problem: k=2 teacher in d=3 and students near it."""
    key = jax.random.key(7)
    t = es.random_teacher(key, d=3, k=2)
    s = es.random_student(jax.random.key(8), d=3, k=2, batch=3, scale=0.5)
    return t, s


def test_flow_loss_non_increasing_and_recovers(easy):
    t, s = easy
    traj = es.gradient_flow("erf", t, s, t1=2e3, gtol=1e-9)
    losses = np.asarray(traj.losses)
    assert np.all(np.diff(losses, axis=-1) <= 1e-12)
    assert traj.losses.shape == (3, 101) and traj.params.theta.shape == (3, 101, 2, 3)
    # refine polishes every end point to a critical point
    polished, gn = es.refine("erf", t, traj.final)
    assert float(jnp.max(gn)) < 1e-10
    rep = es.analyze("erf", t, polished)
    assert (rep.verdict != "not converged").all()


def test_flow_recovers_teacher_in_well_posed_case():
    t = es.Teacher(b=jnp.array([1.0, -0.8]), w=jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    s = es.Student(a=jnp.array([0.7, -0.5]), theta=jnp.array([[0.8, 0.2, 0.1], [0.1, 0.7, -0.2]]))
    traj = es.gradient_flow("erf", t, s, t1=1e4, gtol=1e-8)
    polished, gn = es.refine("erf", t, traj.final)
    assert float(gn) < 1e-10
    rep = es.analyze("erf", t, polished)
    assert str(rep.verdict) == "global minimum" and int(rep.recovered) == 2


def test_flow_stops_below_gtol():
    """The stopping rule: once the gradient norm is below gtol the state stops moving and the solver
    reaches t1 in a few steps (an explicit solver would otherwise need thousands more)."""
    t = es.Teacher(b=jnp.array([1.0, -0.8]), w=jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    s = es.Student(a=jnp.array([0.7, -0.5]), theta=jnp.array([[0.8, 0.2, 0.1], [0.1, 0.7, -0.2]]))
    traj = es.gradient_flow("erf", t, s, t1=1e4, gtol=1e-8)
    assert str(traj.status_names()) == "converged" and float(traj.final_grad_norm) < 1e-8
    gns = np.asarray(traj.grad_norms)
    first = int(np.argmax(gns < 1e-8))
    assert 0 < first < gns.size - 1 and np.all(gns[first:] < 1e-8) and gns[first - 1] >= 1e-8
    th = np.asarray(traj.params.theta)
    np.testing.assert_array_equal(th[first:], np.broadcast_to(th[-1], th[first:].shape))
    free = es.gradient_flow("erf", t, s, t1=1e4, gtol=0.0)
    assert str(free.status_names()) == "limit_reached"
    assert int(traj.n_steps) < int(free.n_steps) / 5


def test_gd_tracks_flow_first_order(easy):
    """GD with step h is Euler's method for the flow: its error at fixed time shrinks ~ linearly in h."""
    t, s = easy
    s0 = es.Student(a=s.a[0], theta=s.theta[0])
    T = 2.0
    ref = es.gradient_flow("erf", t, s0, t1=T, gtol=0.0, rtol=1e-12, atol=1e-12, n_save=2).final
    errs = []
    for h in (0.02, 0.01, 0.005):
        gd = es.gradient_descent("erf", t, s0, lr=h, max_steps=int(round(T / h)), save_every=int(round(T / h)))
        errs.append(float(jnp.linalg.norm(_flat(gd.final) - _flat(ref))))
    assert errs[0] > errs[1] > errs[2]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(np.abs(orders - 1.0) < 0.15), orders
    # diffrax's Euler with dt0 = h is exactly GD with lr = h
    eul = es.gradient_flow("erf", t, s0, t1=T, solver="euler", dt0=0.01, gtol=0.0, n_save=2).final
    gd = es.gradient_descent("erf", t, s0, lr=0.01, max_steps=200, save_every=200).final
    np.testing.assert_allclose(_flat(eul), _flat(gd), atol=1e-10)


def test_earnshaw_coulomb_electrons_end_on_protons():
    """Coulomb in d=3 (Earnshaw): electron-proton dynamics has no equilibrium away from the charges, so
    from random starts every flow ends with an electron falling onto a proton (never on an electron)."""
    key = jax.random.key(3)
    w = jax.random.normal(key, (3, 3)) * 1.5
    t = es.Teacher(b=jnp.array([1.0, 0.7, 1.2]), w=w)
    s = es.Student(a=jnp.broadcast_to(jnp.array([1.0, 0.8, 0.6]), (6, 3)),
                   theta=jax.random.normal(jax.random.key(4), (6, 3, 3)) * 2.0)
    traj = es.gradient_flow(es.potential("coulomb", d=3), t, s, t1=1e4, train="theta", gtol=1e-10,
                            collision_radius=1e-3, rtol=1e-6, atol=1e-9)
    assert traj.status_names().tolist() == ["collided"] * 6
    th = np.asarray(traj.final.theta)
    d_ep = np.linalg.norm(th[:, :, None] - np.asarray(w)[None, None], axis=-1).min(axis=(1, 2))
    assert np.all(d_ep < 1e-3)
    # the reduced loss decreased along the way
    assert np.all(np.asarray(traj.losses[:, -1]) < np.asarray(traj.losses[:, 0]))


def test_second_gd_escapes_saddle_and_stops_by_rule():
    """docs/math.md section 5: f = x^2 - y^2/2 + y^4/4 from (0.3, 0): GD converges to the saddle, SecondGD escapes."""
    # realise f as a 'problem' through train='theta' on a custom objective
    def toy(pot, t, s):  # an objective passed as a callable (pot, teacher, student) -> value
        x, y = s.theta[..., 0, 0], s.theta[..., 0, 1]
        return x**2 - y**2 / 2 + y**4 / 4

    t = es.Teacher(b=jnp.zeros(1), w=jnp.zeros((1, 2)))
    problem = es.Problem("linear", t, objective=toy, train="theta")
    s = es.Student(a=jnp.zeros(1), theta=jnp.array([[0.3, 0.0]]))
    gd = es.gradient_descent(problem, s, lr=0.1, max_steps=500)
    assert float(jnp.abs(gd.final.theta[0, 1])) < 1e-12 and float(gd.final_loss) > -1e-6
    sg = es.second_gd(problem, s, lr=0.1, max_steps=10_000, eta=1e-4, gamma=1e-4)
    assert str(sg.status_names()) == "stalled"
    assert float(sg.final_loss) == pytest.approx(-0.25, abs=1e-6)
    assert abs(float(jnp.abs(sg.final.theta[0, 1])) - 1.0) < 1e-2
    assert 50 < int(sg.n_steps) < 1000
    hd = es.hessian_descent("linear", t, es.Student(a=jnp.zeros(1), theta=jnp.array([[0.0, 0.0]])),
                            lr=0.5, max_steps=50, objective=toy, train="theta")
    assert float(hd.final_loss) < -1e-3  # left the saddle at the origin downhill


def test_nodewise_recovers_every_unit_gaussian():
    t = es.Teacher(b=jnp.array([0.9, -0.6]), w=jnp.array([[1.2, 0.0, 0.0], [-0.8, 0.9, 0.4]]))
    pot = es.potential("gaussian", ell=0.6)  # short range: little cross-talk between the units
    traj = es.nodewise_descent(None, pot, t, k=2, lr=0.05, max_steps=20_000, eta=1e-7, gamma=1e-7, resolve_a=True)
    rep = es.analyze(pot, t, traj.final, gtol=1e-3, match_tol=1e-2)
    assert int(rep.recovered) == 2
    assert traj.losses.shape == (4,)  # before any unit, after each unit, after re-solving a
    assert float(traj.losses[-1]) < 1e-4 < float(traj.losses[0])
    assert traj.status_names() == "converged"


@pytest.mark.parametrize("pot_name,objective", [("erf", "L"), ("erf", "G"), ("coulomb", "reduced")])
def test_nodewise_unit_objective_is_the_full_one_up_to_a_constant(pot_name, objective):
    """Node-wise descent runs SecondGD on the terms of the objective that involve unit i: the same
    differences of value, gradient and Hessian as the full objective with every other unit fixed."""
    pot = es.potential(pot_name, **({"d": 3} if pot_name == "coulomb" else {}))
    k, d, i = 3, 3, 1
    t = es.random_teacher(jax.random.key(0), d=d, k=k)
    s = es.random_student(jax.random.key(1), d=d, k=k)
    active = jnp.arange(k) < i
    a_fixed = jnp.where(active, s.a, 0.0)
    others = lambda th: jnp.where(active[:, None], s.theta, th + 1.0)  # noqa: E731
    full_obj = es.Problem(pot, t, objective=objective).f

    def full(z):
        # the node-wise state: units after i inactive (a = 0) and, for a singular potential, away from unit i
        theta = jnp.where(active[:, None], s.theta, s.theta + 5.0).at[i].set(z[1:])
        return full_obj(_flat(es.Student(a=a_fixed.at[i].set(z[0]), theta=theta)))

    def cross(th):
        return jnp.sum(a_fixed * pot(th, others(th))) - jnp.sum(t.b * pot(th, t.w))

    f = nodewise._node_objective(pot, cross, objective, full)
    zs = jax.random.normal(jax.random.key(2), (4, d + 1), jnp.float64)
    diff = jax.vmap(f)(zs) - jax.vmap(full)(zs)
    np.testing.assert_allclose(diff - diff[0], 0.0, atol=1e-12)
    # compiled once for the four points (run op by op, the Hessians took 20 s)
    derivs = jax.jit(jax.vmap(lambda z: (jax.grad(f)(z), jax.grad(full)(z), jax.hessian(f)(z), jax.hessian(full)(z))))
    g_node, g_full, h_node, h_full = derivs(zs)
    assert h_node.shape == (4, d + 1, d + 1)
    np.testing.assert_allclose(g_node, g_full, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_node, h_full, rtol=1e-9, atol=1e-11)
    # a custom objective falls back to the full one
    assert nodewise._node_objective(pot, cross, lambda *a: 0.0, full) is full


def test_nodewise_resolve_a_appends_a_saved_point():
    t = es.Teacher(b=jnp.array([[0.9, -0.6], [0.7, 0.8]]),
                   w=jnp.array([[[1.2, 0.0, 0.0], [-0.8, 0.9, 0.4]], [[0.5, 0.5, 0.0], [-0.6, -0.4, 0.3]]]))
    s = es.Student(a=jnp.zeros((2, 2)), theta=jnp.zeros((2, 2, 3)))
    pot = es.potential("gaussian", ell=0.6)
    kw = dict(lr=0.05, max_steps=5_000, eta=1e-7, gamma=1e-7)
    plain = es.nodewise_descent(None, pot, t, s, **kw)
    res = es.nodewise_descent(None, pot, t, s, resolve_a=True, **kw)
    assert plain.losses.shape == (2, 3) and res.losses.shape == (2, 4) and res.params.a.shape == (2, 4, 2)
    # the first k + 1 points are those without resolve_a; the appended one has the same theta, a re-solved
    np.testing.assert_allclose(res.losses[:, :3], plain.losses, rtol=1e-12)
    np.testing.assert_allclose(res.params.a[:, :3], plain.params.a, rtol=1e-12)
    np.testing.assert_allclose(res.params.theta[:, -1], plain.final.theta, rtol=1e-12)
    np.testing.assert_allclose(res.final.a, es.optimal_a(pot, t, plain.final.theta), rtol=1e-10)
    np.testing.assert_allclose(res.final_loss, res.losses[:, -1])
    assert bool(jnp.all(res.losses[:, -1] <= res.losses[:, -2] + 1e-15))  # optimal a cannot be worse
    from earnshaw.experiments.theorems import _unresolved_a
    np.testing.assert_allclose(_unresolved_a(res), plain.final.a, rtol=1e-12)
    np.testing.assert_allclose(_unresolved_a(plain), plain.final.a)


def test_nodewise_best_of_starts_and_budget_status():
    """``init_theta="best_of"`` (Lemma 26's search) starts each unit where its optimal charge lowers L most
    (``theta = 0`` is a candidate, so never worse than the zero start); a unit that uses all ``node_steps``
    makes the status ``limit_reached``."""
    pot = es.potential("gaussian", ell=0.6)
    t = es.Teacher(b=jnp.array([0.9, -0.6]), w=jnp.array([[1.2, 0.0, 0.0], [-0.8, 0.9, 0.4]]))
    one = dict(lr=0.05, max_steps=1, eta=1e-7, gamma=1e-7)  # one step: the losses show the starts
    zero = es.nodewise_descent(None, pot, t, k=2, init_theta="zero", **one)
    best = es.nodewise_descent(jax.random.key(0), pot, t, k=2, init_theta="best_of", init_scale=1.0, n_starts=32,
                               **one)
    assert zero.status_names() == "limit_reached" and best.status_names() == "limit_reached"
    assert float(best.losses[1]) < float(zero.losses[1]) - 0.1  # a start near a proton, not at 0
    full = es.nodewise_descent(jax.random.key(0), pot, t, k=2, lr=0.05, max_steps=20_000, eta=1e-7, gamma=1e-7,
                               init_theta="best_of", init_scale=1.0, n_starts=32, resolve_a=True)
    assert full.status_names() == "converged"
    assert int(es.analyze(pot, t, full.final, gtol=1e-3, match_tol=1e-2).recovered) == 2
    with pytest.raises(ValueError, match="PRNG key"):
        es.nodewise_descent(None, pot, t, k=2, init_theta="best_of")
    with pytest.raises(ValueError, match="n_starts"):
        es.nodewise_descent(jax.random.key(0), pot, t, k=2, init_theta="best_of", n_starts=0)


def test_batched_equals_per_seed_and_is_deterministic(easy):
    t, s = easy
    batched = es.gradient_descent("erf", t, s, lr=0.05, max_steps=300)
    for i in range(3):
        one = es.gradient_descent("erf", t, es.Student(a=s.a[i], theta=s.theta[i]), lr=0.05, max_steps=300)
        np.testing.assert_allclose(_flat(batched.final)[i], _flat(one.final), atol=1e-12)
        assert float(batched.final_loss[i]) == pytest.approx(float(one.final_loss), abs=1e-13)
    again = es.gradient_descent("erf", t, s, lr=0.05, max_steps=300)
    np.testing.assert_array_equal(np.asarray(again.final.theta), np.asarray(batched.final.theta))
    fb = es.gradient_flow("erf", t, s, t1=10.0)
    f1 = es.gradient_flow("erf", t, es.Student(a=s.a[1], theta=s.theta[1]), t1=10.0)
    np.testing.assert_allclose(_flat(fb.final)[1], _flat(f1.final), atol=1e-8)
    k1, k2 = jax.random.key(5), jax.random.key(5)
    p1 = es.perturbed_gd(k1, "erf", t, s, lr=0.05, max_steps=200, g_thres=1.0, t_thres=10)
    p2 = es.perturbed_gd(k2, "erf", t, s, lr=0.05, max_steps=200, g_thres=1.0, t_thres=10)
    np.testing.assert_array_equal(np.asarray(p1.final.theta), np.asarray(p2.final.theta))
    assert not np.allclose(np.asarray(p1.final.theta), np.asarray(batched.final.theta))


def test_batch_of_step_sizes(easy):
    t, s = easy
    lrs = jnp.array([0.01, 0.05, 0.1])
    traj = es.gradient_descent("erf", t, s, lr=lrs, max_steps=100)
    one = es.gradient_descent("erf", t, es.Student(a=s.a[2], theta=s.theta[2]), lr=0.1, max_steps=100)
    np.testing.assert_allclose(_flat(traj.final)[2], _flat(one.final), atol=1e-12)


def test_train_modes_freeze_the_other_variables(easy):
    t, s = easy
    th = es.gradient_descent("erf", t, s, lr=0.05, max_steps=50, train="theta")
    np.testing.assert_array_equal(np.asarray(th.final.a), np.asarray(s.a))
    assert not np.allclose(np.asarray(th.final.theta), np.asarray(s.theta))
    aa = es.gradient_flow("erf", t, s, t1=5.0, train="a")
    np.testing.assert_allclose(np.asarray(aa.final.theta), np.asarray(s.theta), atol=1e-14)


def test_sphere_projection_keeps_unit_norm(easy):
    t, s = easy
    traj = es.gradient_descent("hermite3", t, s, lr=0.05, max_steps=100, manifold="sphere")
    np.testing.assert_allclose(np.linalg.norm(np.asarray(traj.final.theta), axis=-1), 1.0, atol=1e-12)


def test_divergence_detected_with_clear_message(easy):
    t, s = easy
    one = es.Student(a=s.a[0] * 5, theta=s.theta[0])
    with pytest.raises(es.DivergenceError, match="step size too large"):
        es.gradient_descent("quadratic", t, one, lr=50.0, max_steps=200)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        traj = es.gradient_descent("quadratic", t, s, lr=jnp.array([1e-3, 50.0, 1e-3]), max_steps=200)
    assert any("1 of 3 problems" in str(r.message) for r in rec)
    assert traj.status_names().tolist() == ["limit_reached", "diverged", "limit_reached"]
    assert bool(jnp.all(jnp.isfinite(traj.final.theta)))


def test_float64_preserved(easy):
    t, s = easy
    traj = es.gradient_descent("erf", t, s, lr=0.05, max_steps=20)
    assert traj.final.theta.dtype == jnp.float64 and traj.final_loss.dtype == jnp.float64


def test_bad_options_are_rejected(easy):
    t, s = easy
    with pytest.raises(ValueError, match="valid: both, theta, a"):
        es.gradient_descent("erf", t, s, train="w")
    with pytest.raises(ValueError, match="valid: tsit5"):
        es.gradient_flow("erf", t, s, solver="rk4")
    with pytest.raises(ValueError, match="batch shape"):
        es.gradient_descent("erf", t, s, lr=jnp.ones(5))


def test_mixed_precision_is_promoted_and_on_divergence_validated():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    s = es.random_student(jax.random.key(1), d=3, k=2, dtype=jnp.float32)
    gd = es.gradient_descent("erf", t, s, max_steps=20)
    flow = es.gradient_flow("erf", t, s, t1=1.0)
    assert gd.final.a.dtype == jnp.float64 and flow.final.theta.dtype == jnp.float64
    s64 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64), s)
    np.testing.assert_array_equal(_flat(gd.final), _flat(es.gradient_descent("erf", t, s64, max_steps=20).final))
    for call in (lambda: es.gradient_descent("erf", t, s, max_steps=2, on_divergence="bogus"),
                 lambda: es.gradient_flow("erf", t, s, t1=1.0, on_divergence="bogus")):
        with pytest.raises(ValueError, match="valid: raise, warn, ignore"):
            call()


def test_descent_start_point_is_evaluated_once_and_recorded(easy):
    """The loop's first pass evaluates the start point: a start already below tol stops there (no step),
    a non-finite start is refused by name, and the first record is the start with its loss."""
    t, s = easy
    one = es.Student(a=s.a[0], theta=s.theta[0])
    loss0 = float(es.population_loss("erf", t, one))
    done = es.gradient_descent("erf", t, one, lr=1e-2, max_steps=50, gtol=1e3)
    assert str(done.status_names()) == "converged" and int(done.n_steps) == 0
    assert int(done.n_grad_evals) == 1
    np.testing.assert_array_equal(_flat(done.final), _flat(one))
    for method in (es.gradient_descent, es.second_gd, es.hessian_descent):
        run = method("erf", t, one, lr=1e-2, max_steps=50)
        assert int(run.n_steps) > 0 and float(run.ts[0]) == 0.0
        np.testing.assert_allclose(float(run.losses[0]), loss0, rtol=1e-12)
        np.testing.assert_allclose(_flat(es.Student(a=run.params.a[0], theta=run.params.theta[0])),
                                   _flat(one))
    bad = es.Student(a=one.a, theta=one.theta.at[0, 0].set(jnp.nan))
    # a non-finite start is named as such (not reported as a step size too large), for every solver
    for call in (lambda: es.gradient_descent("erf", t, bad, lr=1e-2, max_steps=50, on_divergence="ignore"),
                 lambda: es.gradient_flow("erf", t, bad, t1=1.0),
                 lambda: es.second_gd("erf", t, es.Student(a=s.a, theta=s.theta.at[1, 0, 0].set(jnp.inf)))):
        with pytest.raises(ValueError, match=r"start point \(student\) holds NaN or Inf"):
            call()

"""The Problem every solver and analysis shares, the one calling convention, optax rules and the import graph."""
import ast
import pathlib

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import earnshaw as es
from earnshaw.dynamics.rules import perturbed_sgd


@pytest.fixture(scope="module")
def erf():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    s = es.random_student(jax.random.key(1), d=3, k=2, batch=4)
    return es.Problem("erf", t), t, s


def test_flatten_is_ravel_pytree_and_unflatten_inverts_it(erf):
    problem, t, s = erf
    x = problem.flatten(s)
    assert x.shape == (4, 2 + 2 * 3)
    for i in range(4):
        one = es.Student(a=s.a[i], theta=s.theta[i])
        np.testing.assert_array_equal(x[i], ravel_pytree(one)[0])
    back = problem.unflatten(x)
    np.testing.assert_array_equal(back.theta, s.theta)
    np.testing.assert_array_equal(back.a, s.a)
    with pytest.raises(ValueError, match="k \\(1 \\+ d\\)"):
        problem.unflatten(jnp.zeros(7))


def test_value_grad_hessian_agree_with_the_losses_and_finite_differences(erf):
    problem, t, s = erf
    np.testing.assert_allclose(problem.value(s), es.population_loss("erf", t, s), rtol=1e-12)
    v, g = problem.value_and_grad(s)
    np.testing.assert_allclose(v, problem.value(s), rtol=1e-12)
    ref = jax.grad(lambda st: es.population_loss("erf", t, st).sum())(s)
    np.testing.assert_allclose(problem.grad(s).theta, ref.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.a, ref.a, rtol=1e-10, atol=1e-12)
    one = es.Student(a=s.a[0], theta=s.theta[0])
    x = problem.flatten(one)
    h = 1e-5
    f = jax.jit(problem.f)
    fd = np.array([(f(x.at[j].add(h)) - f(x.at[j].add(-h))) / (2 * h) for j in range(x.size)])
    np.testing.assert_allclose(problem.flat_grad(x), fd, atol=1e-8)
    H = problem.hessian(one)
    np.testing.assert_allclose(H, H.T, atol=1e-12)
    np.testing.assert_allclose(H, jax.hessian(problem.replace(gradient="autodiff").f)(x), rtol=1e-9, atol=1e-11)


def test_train_restricts_gradient_and_hessian_to_the_trained_variables(erf):
    _, t, s = erf
    one = es.Student(a=s.a[0], theta=s.theta[0])
    full = es.Problem("erf", t).hessian(one)
    H_theta = es.Problem("erf", t, train="theta").hessian(one)
    H_a = es.Problem("erf", t, train="a").hessian(one)
    np.testing.assert_allclose(H_theta, full[2:, 2:], rtol=1e-12)
    np.testing.assert_allclose(H_a, full[:2, :2], rtol=1e-12)
    g = es.Problem("erf", t, train="theta").grad(one)
    assert bool((g.a == 0).all()) and bool((g.theta != 0).any())


def test_problem_is_a_pytree_batched_over_teachers():
    """A batch of teachers is a batch of problems: jit and vmap see the teacher's arrays as leaves."""
    ts = es.random_teacher(jax.random.key(2), d=3, k=2, batch=3)
    s = es.random_student(jax.random.key(3), d=3, k=2, batch=3)
    problem = es.Problem("erf", ts, objective="G", train="theta")
    leaves, treedef = jax.tree_util.tree_flatten(problem)
    assert len(leaves) == 2 and problem.batch_shape == (3,)
    again = jax.tree_util.tree_unflatten(treedef, leaves)
    assert (again.objective, again.train, again.pot) == ("G", "theta", problem.pot)
    vals = jax.jit(lambda p, st: p.value(st))(problem, s)
    for i in range(3):
        ti = es.Teacher(b=ts.b[i], w=ts.w[i])
        si = es.Student(a=s.a[i], theta=s.theta[i])
        np.testing.assert_allclose(vals[i], es.regularised_loss("erf", ti, si), rtol=1e-12)


def test_problem_validates_its_fields():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    with pytest.raises(ValueError, match="valid: both, theta, a"):
        es.Problem("erf", t, train="w")
    with pytest.raises(ValueError, match="valid: euclidean, sphere"):
        es.Problem("erf", t, manifold="torus")
    with pytest.raises(ValueError, match="valid: L, G, reduced"):
        es.Problem("erf", t, objective="H")
    with pytest.raises(ValueError, match="use grad='autodiff'"):
        es.Problem("sign", t, gradient="closed_form")
    with pytest.raises(TypeError, match="teacher must be an earnshaw.Teacher"):
        es.Problem("erf", (t.b, t.w))
    with pytest.raises(ValueError, match="unknown potential"):
        es.Problem("erff", t)


def test_one_calling_convention_everywhere(erf):
    """(problem, student) and (pot, teacher, student) give the same answers; keywords replace fields;
    options after the student are keyword-only; the key comes first."""
    problem, t, s = erf
    a = es.gradient_descent(problem, s, lr=0.05, max_steps=50)
    b = es.gradient_descent("erf", t, s, lr=0.05, max_steps=50)
    np.testing.assert_array_equal(a.final.theta, b.final.theta)
    th = es.gradient_descent(problem, s, lr=0.05, max_steps=50, train="theta")
    np.testing.assert_array_equal(th.final.a, s.a)
    with pytest.raises(TypeError, match="keyword-only"):
        es.gradient_descent(problem, s, 0.05)
    with pytest.raises(TypeError, match="keyword-only"):
        es.analyze("erf", t)
    with pytest.raises(TypeError, match="PRNG key first"):
        es.perturbed_gd(problem, s, lr=0.05)
    with pytest.raises(TypeError, match="student must be an earnshaw.Student"):
        es.refine(problem, (s.a, s.theta))
    # a student given as Python lists is accepted
    lists = es.Student(a=[1.0, -1.0], theta=[[0.1, 0.2, 0.3], [0.0, -0.5, 0.2]])
    assert es.spectrum(problem, lists).shape == (8,)
    with pytest.raises(ValueError, match="their last axes \\(d\\) differ"):
        es.analyze(problem, es.Student(a=jnp.ones(2), theta=jnp.ones((2, 4))))


def test_gradient_descent_is_optax_sgd_and_any_optax_rule_runs(erf):
    problem, t, s = erf
    gd = es.gradient_descent(problem, s, lr=0.05, max_steps=300)
    sgd = es.optimize(problem, s, optimizer=optax.sgd(0.05), max_steps=300)
    # the same arithmetic in two programs: bit for bit on CPU; a GPU may contract or fuse them differently
    if jax.default_backend() == "cpu":
        np.testing.assert_array_equal(gd.final.theta, sgd.final.theta)
        np.testing.assert_array_equal(gd.losses, sgd.losses)
    np.testing.assert_allclose(gd.final.theta, sgd.final.theta, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(gd.losses, sgd.losses, rtol=1e-13, atol=1e-15)
    adam = es.optimize(problem, s, optimizer=optax.adam(0.02), max_steps=300, train="theta")
    assert bool((adam.final_loss < adam.losses[:, 0]).all())
    np.testing.assert_array_equal(adam.final.a, s.a)  # frozen under train="theta"
    with pytest.raises(es.DivergenceError, match="optimiser's step size"):
        es.optimize("quadratic", t, s, optimizer=optax.sgd(50.0), max_steps=200)
    with pytest.raises(TypeError, match="optax.GradientTransformation"):
        es.optimize(problem, s, optimizer="adam")


def test_perturbed_sgd_kicks_only_below_the_threshold_and_not_too_often():
    opt = perturbed_sgd(0.1, jax.random.key(0), g_thres=0.5, radius=0.2, t_thres=3)
    x = jnp.zeros(4)
    state = opt.init(x)
    big = jnp.ones(4)
    step, state = opt.update(big, state, x)
    np.testing.assert_allclose(step, -0.1 * big)  # a large gradient: a plain GD step
    kicks = []
    for _ in range(7):
        step, state = opt.update(jnp.zeros(4), state, x)
        kicks.append(float(jnp.linalg.norm(step)) > 0)
    # zero gradient from step 1 on: kicks at steps 1, 4 and 7 (t_thres = 3 apart), within the radius
    assert kicks == [True, False, False, True, False, False, True]


def test_flow_accepts_diffrax_solver_and_controller_objects(erf):
    problem, t, s = erf
    by_name = es.gradient_flow(problem, s, t1=20.0, solver="tsit5", rtol=1e-7, atol=1e-9, n_save=3)
    by_obj = es.gradient_flow(problem, s, t1=20.0, solver=diffrax.Tsit5(),
                              controller=diffrax.PIDController(rtol=1e-7, atol=1e-9), n_save=3)
    np.testing.assert_array_equal(by_name.final.theta, by_obj.final.theta)
    np.testing.assert_array_equal(by_name.n_grad_evals, by_obj.n_grad_evals)
    heun = es.gradient_flow(problem, s, t1=20.0, solver=diffrax.Heun(), dt0=0.01, controller="constant", n_save=3)
    np.testing.assert_allclose(heun.final_loss, by_name.final_loss, rtol=1e-4)
    assert int(heun.n_steps[0]) == 2000 and int(heun.n_grad_evals[0]) == 2 * 2000 + 1
    with pytest.raises(TypeError, match="diffrax solver object"):
        es.gradient_flow(problem, s, solver=object())
    with pytest.raises(ValueError, match="valid: pid, constant"):
        es.gradient_flow(problem, s, controller="adaptive")


def test_analyze_over_theta_alone_on_a_fixed_output_weight_relu_problem():
    """The soft committee machine: output weights fixed at 1. A point polished over theta is a critical
    point of that problem (not of the problem that also trains a), and its spectrum has k d eigenvalues."""
    d = k = 3
    t = es.Teacher(b=jnp.ones(k), w=jnp.eye(d))
    relu = es.Problem("relu", t, train="theta")
    s = es.random_student(jax.random.key(5), d=d, k=k, scale=d**-0.5, batch=8)
    s = es.Student(a=jnp.ones((8, k)), theta=s.theta)
    end = es.gradient_descent(relu, s, lr=0.1, max_steps=20_000).final
    polished, gn = es.refine(relu, end)
    over_theta = es.analyze(relu, polished, gtol=1e-9)
    assert over_theta.eigenvalues.shape == (8, k * d)
    assert set(over_theta.verdict.tolist()) <= {"global minimum", "spurious local minimum", "saddle"}
    assert (over_theta.verdict == "global minimum").sum() >= 1
    np.testing.assert_array_equal(polished.a, s.a)
    # the same points over both layers: the a-gradient is not zero where theta missed the teacher
    over_both = es.analyze(relu, polished, gtol=1e-9, train="both")
    assert over_both.eigenvalues.shape == (8, k + k * d)
    missed = over_theta.verdict != "global minimum"
    assert (over_both.grad_norm[missed] > over_theta.grad_norm[missed]).all()


def test_sphere_spectrum_leaves_out_the_radial_directions():
    t = es.random_teacher(jax.random.key(0), d=3, k=2)
    on = es.Student(a=t.b, theta=t.w / jnp.linalg.norm(t.w, axis=-1, keepdims=True))
    sph = es.Problem("erf", es.Teacher(b=on.a, w=on.theta), manifold="sphere")
    ev = es.spectrum(sph, on)
    assert ev.shape == (2 + 2 * 2,)
    assert float(ev[0]) > -1e-10  # the teacher itself is a minimum on the sphere
    # the radial directions are not in the spectrum: scaling theta_i does not move a point on the sphere
    H = es.hessian(sph, on)
    radial = jnp.concatenate([jnp.zeros(2), on.theta.reshape(-1)])
    assert float(jnp.linalg.norm(H @ radial)) < 1e-12


SRC = pathlib.Path(es.__file__).parent


def _imports(path):
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("earnshaw"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("earnshaw"))
    return out


def test_import_graph_follows_the_floors():
    """dynamics and landscape never import each other; problem imports neither; nothing below the CLI
    imports it."""
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        imports = _imports(path)
        if rel.startswith("dynamics/"):
            assert not any(m.startswith("earnshaw.landscape") for m in imports), (rel, imports)
        if rel.startswith("landscape/"):
            assert not any(m.startswith("earnshaw.dynamics") for m in imports), (rel, imports)
        if rel in ("problem.py", "loss.py", "closed_form.py", "network.py", "_typing.py") or rel.startswith(
                "potentials/"):
            assert not any(m.startswith(("earnshaw.dynamics", "earnshaw.landscape", "earnshaw.experiments"))
                           for m in imports), (rel, imports)
        if not rel.startswith("_cli/") and rel != "cli.py":
            assert not any(m.startswith("earnshaw._cli") for m in imports), (rel, imports)

"""No recompilation on new values: counted from XLA's own compile events, not from a Python cache.

JAX records ``/jax/core/compile/backend_compile_duration`` (``jax._src.dispatch.BACKEND_COMPILE_EVENT``)
around every backend compilation, jitted programs and the small programs of eager operations alike, and a
persistent-cache hit still passes through it; a call served by jit's in-memory cache records nothing.
So a repeated call with new arrays of the same shapes must record no event, and a call with a new shape
must record some (which shows the counter is live).
"""
import contextlib

import jax
import jax.numpy as jnp
import pytest
from jax import monitoring

import earnshaw as es

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compiles():
    """Collect the names of the programs XLA compiles inside the block."""
    names = []

    def listener(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            names.append(kwargs.get("fun_name", "?"))

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        monitoring.unregister_event_duration_listener(listener)


def _problem(seed, d, k, batch):
    t = es.random_teacher(jax.random.key(seed), d=d, k=k)
    s = es.random_student(jax.random.key(seed + 1), d=d, k=k, batch=batch)
    return t, s


def test_the_counter_sees_a_jit_compile_and_not_a_cache_hit():
    f = jax.jit(lambda x: jnp.sin(x) * 2.0)
    with compiles() as first:
        f(jnp.ones(17)).block_until_ready()
    with compiles() as again:
        f(jnp.zeros(17)).block_until_ready()
    assert len(first) >= 1 and again == []


# Each case: a call, returning one number of its result per problem (an array of the batch shape). The step
# size is a traced argument (a batch of them is allowed), so a new lr is a new value too; t1, tolerances, trust
# radii, step counts are compile-time constants (part of the program), so they stay fixed here.
# The shapes (d = 4, k = 3, batches 5 and 6) are used by no other test file, so the "new shape" call cannot hit
# a program compiled earlier in the session.
CASES = {
    "gradient_descent": lambda t, s, v: es.gradient_descent("erf", t, s, lr=0.05 + 0.01 * v, max_steps=40).final_loss,
    # the linear potential: the flow's program is the largest to compile (10-13 s with erf's, 7 s with this one)
    "gradient_flow": lambda t, s, v: es.gradient_flow("linear", t, s, t1=2.0, n_save=5).final_loss,
    "analyze": lambda t, s, v: es.analyze("erf", t, s).loss,
    "refine": lambda t, s, v: es.refine("erf", t, s, max_steps=4)[1],
}


@pytest.mark.parametrize("name", list(CASES))
def test_second_call_with_new_values_compiles_nothing(name):
    call = CASES[name]
    t, s = _problem(0, d=4, k=3, batch=5)
    with compiles() as first:
        jax.block_until_ready(call(t, s, 0))
    assert first, f"{name}: the first call compiled nothing, so the counter is not live"
    t2, s2 = _problem(10, d=4, k=3, batch=5)  # new teacher, new students (and a new lr)
    with compiles() as second:
        out = call(t2, s2, 1)
        jax.block_until_ready(out)
    assert second == [], f"{name} recompiled {second} for new values of the same shapes"
    # the second call computed on the new values (it did not return a cached result)
    assert out.shape == (5,) and not jnp.allclose(call(t, s, 0), out)
    with compiles() as new_shape:
        jax.block_until_ready(call(*_problem(0, d=4, k=3, batch=6), 0))
    assert new_shape, f"{name}: a new batch shape compiled nothing"


def test_a_problem_and_its_prefix_share_one_program():
    """es.Problem(pot, teacher) and the (pot, teacher, ...) prefix are one kind of problem: after a call in
    one form, a call in the other with a new teacher (the Problem's leaves) compiles nothing."""
    # the shapes and settings of the gradient_descent case above: after it, the first call compiles nothing either
    t, s = _problem(20, d=4, k=3, batch=5)
    jax.block_until_ready(es.gradient_descent("erf", t, s, lr=0.05, max_steps=40).final_loss)
    t2, s2 = _problem(30, d=4, k=3, batch=5)
    with compiles() as second:
        out = es.gradient_descent(es.Problem("erf", t2), s2, lr=0.05, max_steps=40).final_loss
        jax.block_until_ready(out)
    assert second == [], f"the Problem form recompiled {second}"


def test_a_first_call_of_the_public_functions_compiles_one_program():
    """The losses, a potential's Gram matrix and a Problem's value, gradient and Hessian are compiled as one
    program each: a first call at new shapes records one backend compilation, not one per operation (run op by
    op, ``population_loss`` alone compiled about fifty small programs)."""
    # d = 5, k = 2, batch 9: shapes no other test uses, so every call below meets them first
    t, s = _problem(40, d=5, k=2, batch=9)
    problem = es.Problem("erf", t)
    pot = es.potential("erf")
    calls = {"population_loss": lambda: es.population_loss(pot, t, s),
             "reduced_loss": lambda: es.reduced_loss(pot, t, s),
             "Potential.gram": lambda: pot.gram(s.theta, t.w),
             "Problem.value": lambda: problem.value(s),
             "Problem.value_and_grad": lambda: problem.value_and_grad(s),
             "Problem.hessian": lambda: problem.hessian(s)}
    for name, call in calls.items():
        with compiles() as first:
            jax.block_until_ready(call())
        assert len(first) == 1, f"{name}: compiled {first}"

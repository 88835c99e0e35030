"""Cost of the potentials without a closed form against erf's closed form: value + gradient of the population
loss (one instance and a batch of students) and GD steps/s, for erf, tanh / sigmoid_pm1 by the Hermite tables
(students at norm 0.9 from a random start, at the global minimum, and with one unit of norm 1.6 parallel to a teacher
unit: each call runs the degrees its pairs need) and by 2-D Gauss-Hermite quadrature
(order 128), softplus / silu / sigmoid by their first table, with the tables' accuracy against order-300
quadrature.
Writes benchmarks/results/potentials.json."""
from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import earnshaw as es  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "potentials.json"


def best(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _unit_scale(key, d, k, norm, batch=None):
    """Teacher and students with every unit of norm ``norm`` (inside the fast table's 1e-12 region at <= 1.1)."""
    t = es.random_teacher(key, d=d, k=k)
    s = es.random_student(jax.random.fold_in(key, 1), d=d, k=k, batch=batch)
    w = t.w / jnp.linalg.norm(t.w, axis=-1, keepdims=True)
    theta = norm * s.theta / jnp.linalg.norm(s.theta, axis=-1, keepdims=True)
    return type(t)(w=w, b=t.b), type(s)(theta=theta, a=s.a)


def value_and_grad_time(pot, teacher, student, calls):
    f = jax.jit(jax.value_and_grad(lambda st: es.population_loss(pot, teacher, st)))
    if student.theta.ndim == 3:
        f = jax.jit(jax.vmap(jax.value_and_grad(lambda st: es.population_loss(pot, teacher, st))))

    def run():
        for _ in range(calls):
            out = f(student)
        jax.block_until_ready(out)
    return best(run) / calls


def _plan(pot, teacher, student):
    """The evaluation a loss call takes and the degrees its series runs (fast.grams_plan of its three Gram
    matrices)."""
    from earnshaw.potentials import fast

    tier, degrees = fast.grams_plan(pot.fn.args[1], (student.theta, teacher.w), ((0, 0), (0, 1), (1, 1)))
    return int(tier), int(degrees)


def _errors(pot, ref, teacher, student):
    """Largest error of the loss's Gram matrices and of its gradient against ``ref``."""
    err = max(float(jnp.abs(pot.gram(x, y) - ref.gram(x, y)).max())
              for x, y in ((student.theta, teacher.w), (student.theta, student.theta)))
    g = jax.grad(lambda st: es.population_loss(pot, teacher, st))(student)
    g_ref = jax.grad(lambda st: es.population_loss(ref, teacher, st))(student)
    return dict(max_err_value=err, max_err_grad=float(jnp.abs(g.theta - g_ref.theta).max()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-quadrature", action="store_true", help="skip the order-128 quadrature rows")
    ap.add_argument("--out", type=pathlib.Path, default=None,
                    help=f"where the results go (default {RESULTS.relative_to(RESULTS.parents[2])}, not written with "
                    "--quick unless given)")
    args = ap.parse_args(argv)
    calls = 20 if args.quick else 200
    key = jax.random.key(0)
    t, s = _unit_scale(key, args.d, args.k, 0.9)
    _, sb = _unit_scale(key, args.d, args.k, 0.9, batch=args.batch)
    rows = []
    erf = es.potential("erf")
    base = {"single": value_and_grad_time(erf, t, s, calls), "batched": value_and_grad_time(erf, t, sb, calls // 4)}
    quad = {name: es.potential(name, method="quadrature") for name in ("tanh", "sigmoid_pm1")}
    print(f"{'potential':>30} {'v+g single (us)':>16} {'x erf':>7} {'v+g batch (us)':>15} {'x erf':>7} {'max err':>9}")
    print(f"{'erf closed':>30} {1e6 * base['single']:>16.1f} {1.0:>7.2f} {1e6 * base['batched']:>15.1f} {1.0:>7.2f}")
    # the student at the global minimum (every unit on a teacher unit: rho = 1 at norm 1), where a landscape
    # study ends; and one student unit of norm 1.6 parallel to a teacher unit, which takes most of the table
    s_min = type(s)(theta=t.w, a=s.a)
    sb_min = type(sb)(theta=jnp.broadcast_to(t.w, sb.theta.shape), a=sb.a)
    s_wide = type(s)(theta=s.theta.at[0].set(1.6 * t.w[0]), a=s.a)
    sb_wide = type(sb)(theta=sb.theta.at[0, 0].set(1.6 * t.w[0]), a=sb.a)
    # the paper's two activations in full; the other smooth ones without a closed form, their first table only
    for name in ("tanh", "sigmoid_pm1", "softplus", "silu", "sigmoid"):
        fast = es.potential(name, method="fast")
        cases = (("fast", fast, s, sb, calls),)
        if name in quad:
            cases += (("fast, minimum", fast, s_min, sb_min, calls),
                      ("fast, 1.6 parallel", fast, s_wide, sb_wide, calls))
            if not args.no_quadrature:
                cases += (("quadrature", quad[name], s, sb, max(2, calls // 50)),)
        for label, pot, st, stb, quick_calls in cases:
            single = value_and_grad_time(pot, t, st, quick_calls)
            # quadrature on the whole batch takes minutes; its cost is linear in the batch, so time 4 students
            batched = value_and_grad_time(pot, t, stb, max(1, quick_calls // 4)) if label != "quadrature" else \
                value_and_grad_time(pot, t, type(stb)(theta=stb.theta[:4], a=stb.a[:4]), 1) * args.batch / 4
            row = dict(potential=f"{name} {label}", k=args.k, d=args.d, batch=args.batch,
                       value_grad_single_s=single, value_grad_batched_s=batched,
                       ratio_single=single / base["single"], ratio_batched=batched / base["batched"])
            errs = ""
            if label != "quadrature":
                tier, degrees = _plan(pot, t, st)
                row.update(tier=tier, degrees=degrees, **_errors(pot, es.potential(name, order=300), t, st))
                errs = f"{max(row['max_err_value'], row['max_err_grad']):>9.1e} (tier {tier}, {degrees} degrees)"
            rows.append(row)
            print(f"{name + ' ' + label:>30} {1e6 * single:>16.1f} {single / base['single']:>7.2f} "
                  f"{1e6 * batched:>15.1f} {batched / base['batched']:>7.2f} {errs}")
    # GD steps/s with small steps, so that every unit stays inside the fast table's 1e-12 region
    steps = 200 if args.quick else args.steps
    gd = {}
    for name in ("erf", "tanh", "sigmoid_pm1"):
        pot = es.potential(name) if name == "erf" else es.potential(name, method="fast")
        sec = best(lambda: es.gradient_descent(pot, t, s, lr=1e-3, max_steps=steps,
                                               save_every=steps).final.a.block_until_ready(), repeats=3)
        gd[name] = steps / sec
    print("GD steps/s (lr 1e-3): " + ", ".join(f"{n} {v:.0f}" for n, v in gd.items())
          + f"; tanh x erf {gd['erf'] / gd['tanh']:.2f}, sigmoid_pm1 x erf {gd['erf'] / gd['sigmoid_pm1']:.2f}")
    out = dict(rows=rows, erf=base, gd_steps_per_s=gd)
    if not args.quick or args.out is not None:
        args.out = args.out or RESULTS
        args.out.parent.mkdir(exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(out, device=str(jax.devices()[0].device_kind)), indent=2))
        tmp.replace(args.out)
    return out


if __name__ == "__main__":
    main()

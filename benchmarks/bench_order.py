"""Order-parameter GD against direct population GD (both earnshaw, erf, closed form): the cost of a step no
longer grows with d. Prints steps/s of each, the ratio, d / k, and the ratio of their multiply-adds.

A direct step at k = m costs about 4 k^2 d multiply-adds (the Gram products Theta Theta', Theta W' and the two
force products); an order-parameter step about k (k + m)^2 + k^2 (k + m) = 6 k^3 (M G and M G M', M = [A B],
G the joint Gram matrix), plus k (k + m) arcsines. So the arithmetic alone predicts (2/3) d / k, before the
arcsines and before the fixed cost of each of the order step's dozen small XLA operations. A batch of seeds
(--batch, one program for all) shares those fixed costs: its rows compare seed-steps per second."""
from __future__ import annotations

import argparse
import os
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)

import earnshaw as es  # noqa: E402


def best(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--dims", default="100,1000,10000")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64, help="seeds of the batched rows (0: none)")
    ap.add_argument("--out", default=None, help="JSON file for the results (default: benchmarks/results/order.json, "
                                               "written by a run with the default sizes)")
    args = ap.parse_args(argv)
    k, steps = args.k, args.steps
    from benchmarks.bench_compile import machine_speed

    speed, load = machine_speed(), os.getloadavg()[0]
    print(f"machine: GD at k = d = 5 runs {speed:,.0f} steps/s; load average {load:.1f}")
    print(f"{'d':>7} {'direct steps/s':>15} {'order steps/s':>14} {'ratio':>7} {'d/k':>6} {'mult-adds':>10}")
    rows = []
    for d in (int(x) for x in args.dims.split(",")):
        t = es.random_teacher(jax.random.key(0), d=d, k=k, scale=d**-0.5)
        s = es.random_student(jax.random.key(1), d=d, k=k, scale=d**-0.5)
        p, T = es.order_parameters(t, s)
        direct = best(lambda: es.gradient_descent("erf", t, s, lr=0.05, max_steps=steps,
                                                  save_every=steps).final.a.block_until_ready())
        order = best(lambda: es.order_gd("erf", T, t.b, p, lr=0.05, max_steps=steps,
                                         save_every=steps).final.Q.block_until_ready())
        madds = 4 * k * k * d / (k * (2 * k) ** 2 + k * k * (2 * k))
        rows.append(dict(bench="order-parameter GD against direct population GD (erf, float64)", k=k, d=d,
                         direct_steps_per_s=steps / direct, order_steps_per_s=steps / order,
                         ratio=direct / order, d_over_k=d / k, multiply_add_ratio=madds))
        print(f"{d:>7} {steps / direct:>15.0f} {steps / order:>14.0f} {direct / order:>7.1f} {d / k:>6.0f} "
              f"{madds:>10.0f}")
    if args.batch:
        n = args.batch
        print(f"a batch of {n} seeds in one call (seed-steps/s):")
        for d in (int(x) for x in args.dims.split(",")):
            t = es.random_teacher(jax.random.key(0), d=d, k=k, scale=d**-0.5)
            s = es.random_student(jax.random.key(1), d=d, k=k, batch=n, scale=d**-0.5)
            p, T = es.order_parameters(t, s)
            few = max(20, steps * 1000 // max(1, d * n // 10))  # the direct batch streams n k d numbers a step
            few = min(few, steps)
            direct = best(lambda: es.gradient_descent("erf", t, s, lr=0.05, max_steps=few,
                                                      save_every=few).final.a.block_until_ready()) / few
            order = best(lambda: es.order_gd("erf", T, t.b, p, lr=0.05, max_steps=steps,
                                             save_every=steps).final.Q.block_until_ready()) / steps
            rows.append(dict(bench=f"order-parameter GD against direct population GD, {n} seeds (erf, float64)",
                             k=k, d=d, seeds=n, direct_seed_steps_per_s=n / direct, order_seed_steps_per_s=n / order,
                             ratio=direct / order, d_over_k=d / k))
            print(f"{d:>7} {n / direct:>15.0f} {n / order:>14.0f} {direct / order:>7.1f} {d / k:>6.0f}")
    defaults = ap.parse_args([])
    sizes = ("k", "dims", "steps", "batch")
    if args.out is not None or all(getattr(args, a) == getattr(defaults, a) for a in sizes):
        from earnshaw.store import write_json_atomic

        out = pathlib.Path(args.out) if args.out else pathlib.Path(__file__).parent / "results" / "order.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, dict(rows=rows, environment={"jax": jax.__version__, "backend": jax.default_backend(),
                                                            "GD k=d=5 steps/s": round(speed),
                                                            "load average": round(load, 1)}))
        print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()

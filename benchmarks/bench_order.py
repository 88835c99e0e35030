"""Order-parameter GD against direct population GD (both earnshaw, erf, closed form): the cost of a step no
longer grows with d. Prints steps/s of each and the ratio, expected near d / k for large d."""
from __future__ import annotations

import argparse
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
    args = ap.parse_args(argv)
    k, steps = args.k, args.steps
    print(f"{'d':>7} {'direct steps/s':>15} {'order steps/s':>14} {'ratio':>7} {'d/k':>6}")
    rows = []
    for d in (int(x) for x in args.dims.split(",")):
        t = es.random_teacher(jax.random.key(0), d=d, k=k, scale=d**-0.5)
        s = es.random_student(jax.random.key(1), d=d, k=k, scale=d**-0.5)
        p, T = es.order_parameters(t, s)
        direct = best(lambda: es.gradient_descent("erf", t, s, lr=0.05, max_steps=steps,
                                                  save_every=steps).final.a.block_until_ready())
        order = best(lambda: es.order_gd("erf", T, t.b, p, lr=0.05, max_steps=steps,
                                         save_every=steps).final.Q.block_until_ready())
        rows.append(dict(d=d, direct_steps_per_s=steps / direct, order_steps_per_s=steps / order,
                         ratio=direct / order))
        print(f"{d:>7} {steps / direct:>15.0f} {steps / order:>14.0f} {direct / order:>7.1f} {d / k:>6.0f}")
    return rows


if __name__ == "__main__":
    main()

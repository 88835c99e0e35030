"""Online SGD throughput: earnshaw's compiled simulation (one program, seeds vmapped, steps in lax.scan)
against a batched PyTorch loop written the way a user would (seeds as a batch axis, a Python loop over steps),
same d, K, M, seeds and steps, erf units, float32. Also the ODE of K = M = 10 to t = 10^4.
Prints steps * seeds per second of each and the ratio."""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import earnshaw as es


def best(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def torch_loop(d, K, M, seeds, steps, lr=0.5, lr_a=0.5, seed=0):
    """Online SGD on a soft committee machine in PyTorch: the loop a user would write."""
    import torch

    torch.manual_seed(seed)
    w = torch.eye(M, d)  # teacher units
    b = torch.ones(M)
    theta = torch.randn(seeds, K, d) * math.sqrt(0.5 / d)
    a = torch.ones(seeds, K)
    with torch.no_grad():
        for _ in range(steps):
            x = torch.randn(seeds, d)
            lam = torch.einsum("skd,sd->sk", theta, x)
            y = torch.erf(x @ w.T) @ b
            delta = (a * torch.erf(lam)).sum(-1) - y  # (seeds,)
            ds = (2 / math.sqrt(math.pi)) * torch.exp(-lam**2)
            theta -= (lr / d) * (a * ds * delta[:, None])[:, :, None] * x[:, None, :]
            a -= (lr_a / d) * torch.erf(lam) * delta[:, None]
    return float(a.sum())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--K", type=int, default=4)
    ap.add_argument("--M", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--no-ode", action="store_true", help="skip the K = M = 10 ODE timing")
    ap.add_argument("--out", default=None, help="JSON file for the results (default: benchmarks/results/online.json, "
                                               "written by a run with the default sizes)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    d, K, M, seeds, steps = args.d, args.K, args.M, args.seeds, args.steps
    teacher = es.Teacher(b=jnp.ones(M), w=jnp.eye(M, d))
    theta = jax.random.normal(jax.random.key(1), (seeds, K, d)) * math.sqrt(0.5 / d)
    student = es.Student(a=jnp.ones((seeds, K)), theta=theta)
    t1 = steps / d
    env = {"load average (simulation)": round(os.getloadavg()[0], 1)}

    def ours():
        es.online_sgd(jax.random.key(2), "erf", teacher, student, lr=0.5, t1=t1, n_save=3).eps_g.block_until_ready()

    mine = best(ours)
    theirs = best(lambda: torch_loop(d, K, M, seeds, steps), repeats=2)
    rate_mine, rate_theirs = steps * seeds / mine, steps * seeds / theirs
    print(f"d = {d}, K = {K}, M = {M}, {seeds} seeds, {steps} steps each (float32, CPU)")
    print(f"{'':>10} {'samples/s':>12} {'seconds':>8}")
    print(f"{'earnshaw':>10} {rate_mine:>12.3g} {mine:>8.2f}")
    print(f"{'pytorch':>10} {rate_theirs:>12.3g} {theirs:>8.2f}")
    print(f"ratio (earnshaw / pytorch throughput): {rate_mine / rate_theirs:.1f}")
    rows = [dict(bench="online SGD simulation vs a batched PyTorch loop", d=d, K=K, M=M, seeds=seeds, steps=steps,
                 earnshaw_samples_per_s=rate_mine, torch_samples_per_s=rate_theirs, ratio=rate_mine / rate_theirs)]
    if not args.no_ode:
        import diffrax

        with jax.enable_x64(True):
            from benchmarks.bench_compile import machine_speed
            from earnshaw.experiments.plateau import plateau_start

            env.update({"GD k=d=5 steps/s": round(machine_speed()), "load average (ODE)": round(os.getloadavg()[0], 1)})
            print(f"machine: GD at k = d = 5 runs {env['GD k=d=5 steps/s']:,} steps/s; "
                  f"load average {env['load average (ODE)']}")
            p, T, b = plateau_start(10, 10, d=1e4, tau=0.5)
            for name, solver in (("Tsit5 (default)", "tsit5"), ("Bosh3", diffrax.Bosh3())):
                run = lambda: es.online_ode("erf", T, b, p, lr=0.1, lr_a=0.0, t1=1e4,  # noqa: E731
                                            n_save=200, solver=solver).eps_g.block_until_ready()
                t0 = time.perf_counter()
                run()
                first = time.perf_counter() - t0
                secs = best(run)
                eps = np.asarray(es.online_ode("erf", T, b, p, lr=0.1, lr_a=0.0, t1=1e4, n_save=200,
                                               solver=solver).eps_g)
                print(f"ODE K = M = 10 (erf, tau = 1/2, lr = 0.1) to t = 1e4, 200 saves, {name}: {secs:.3f} s after "
                      f"compilation (first call {first:.1f} s); eps_g {eps[0]:.3g} -> {max(eps[-1], 0.0):.2g}")
                rows.append(dict(bench="online ODE, K = M = 10, erf, to t = 1e4 (200 saves)", solver=name,
                                 seconds=secs, first_call_seconds=first, target_seconds=1.0))
    defaults = ap.parse_args([])
    if args.out is not None or all(getattr(args, k) == getattr(defaults, k) for k in ("d", "K", "M", "seeds", "steps")):
        from earnshaw.store import write_json_atomic

        out = pathlib.Path(args.out) if args.out else pathlib.Path(__file__).parent / "results" / "online.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, dict(rows=rows, environment={"jax": jax.__version__, "torch": torch.__version__,
                                                            "backend": jax.default_backend(), **env}))
        print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()

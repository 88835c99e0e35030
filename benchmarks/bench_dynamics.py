"""earnshaw dynamics against the code a user would otherwise write, in one run, with ratios.

* population-loss GD (erf, k = d in {5, 20, 100}): earnshaw (jit + scan; autodiff, and the closed-form
  gradient of ``earnshaw.closed_form``) vs a PyTorch eager loop (autograd, float64) vs NumPy with a
  hand-derived gradient;
* gradient flow: earnshaw (diffrax Tsit5) vs scipy ``solve_ivp`` (RK45) with the NumPy gradient,
  same tolerances and horizon;
* batch throughput (instance-steps per second) for 1 .. 10,000 seeds at k = d = 10;
* the Hessian of the depth-2 model vs ``torch.autograd.functional.hessian``;
* compile time of each jitted program.

Run: ``make bench`` (installs the CPU PyTorch wheel) or ``python -m benchmarks.bench_dynamics [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

import earnshaw as es  # noqa: E402

try:
    import torch

    torch.set_default_dtype(torch.float64)
except ImportError:  # pragma: no cover
    torch = None


# ---- baselines a user would write ------------------------------------------------------------------------


def torch_erf_loss(a, th, b, w):
    def gram(U, V):
        c = U @ V.T
        nu = (U * U).sum(-1)[:, None]
        nv = (V * V).sum(-1)[None, :]
        return (2 / math.pi) * torch.asin(2 * c / torch.sqrt((1 + 2 * nu) * (1 + 2 * nv)))
    return a @ gram(th, th) @ a - 2 * a @ gram(th, w) @ b + b @ gram(w, w) @ b


def torch_gd(a, th, b, w, lr, steps):
    a = torch.tensor(np.asarray(a), requires_grad=True)
    th = torch.tensor(np.asarray(th), requires_grad=True)
    b, w = torch.tensor(np.asarray(b)), torch.tensor(np.asarray(w))
    for _ in range(steps):
        loss = torch_erf_loss(a, th, b, w)
        ga, gt = torch.autograd.grad(loss, (a, th))
        with torch.no_grad():
            a -= lr * ga
            th -= lr * gt
    return a.detach().numpy(), th.detach().numpy()


def _np_grad1(U, V):
    """nabla_1 Phi_erf(U_i, V_j): (m, n, d)."""
    c = U @ V.T
    P = 1 + 2 * (U * U).sum(-1)[:, None]
    Q = 1 + 2 * (V * V).sum(-1)[None, :]
    s = 2 * c / np.sqrt(P * Q)
    coef = (2 / np.pi) * 2 / np.sqrt(P * Q) / np.sqrt(1 - s * s)
    return coef[..., None] * (V[None, :, :] - (2 * c / P)[..., None] * U[:, None, :]), s


def numpy_erf_grad(a, th, b, w):
    gK, sK = _np_grad1(th, th)
    gB, sB = _np_grad1(th, w)
    K, B = (2 / np.pi) * np.arcsin(sK), (2 / np.pi) * np.arcsin(sB)
    ga = 2 * (K @ a - B @ b)
    gt = 2 * a[:, None] * (np.einsum("j,ijd->id", a, gK) - np.einsum("j,ijd->id", b, gB))
    return ga, gt


def numpy_gd(a, th, b, w, lr, steps):
    a, th = np.array(a), np.array(th)
    for _ in range(steps):
        ga, gt = numpy_erf_grad(a, th, b, w)
        a -= lr * ga
        th -= lr * gt
    return a, th


def timeit(fn, repeat=3):
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def problem(k, d, seed=0, batch=None):
    kt, ks = jax.random.split(jax.random.key(seed))
    t = es.random_teacher(kt, d, k, scale=1 / math.sqrt(d))
    s = es.random_student(ks, d, k, scale=1 / math.sqrt(d), batch=batch)
    return t, s


# ---- benchmarks ---------------------------------------------------------------------------------------------


def bench_gd(sizes, steps_of):
    """Autodiff against PyTorch's autograd, the closed-form gradient against NumPy's hand-derived one."""
    rows = []
    for k in sizes:
        t, s = problem(k, k)
        steps = steps_of(k)
        lr = 0.01
        times = {}
        for grad in ("autodiff", "closed_form"):
            def run():
                es.gradient_descent("erf", t, s, lr=lr, max_steps=steps, save_every=steps,
                                    grad=grad).final.a.block_until_ready()
            t0 = time.perf_counter()
            run()
            first = time.perf_counter() - t0
            times[grad] = timeit(run)
            times[grad + "_compile"] = first - times[grad]
        t_es, t_cf = times["autodiff"], times["closed_form"]
        t_steps = max(steps // 10, 20)
        t_torch = timeit(lambda: torch_gd(s.a, s.theta, t.b, t.w, lr, t_steps), 1) * steps / t_steps
        t_np = timeit(lambda: numpy_gd(s.a, s.theta, t.b, t.w, lr, t_steps), 1) * steps / t_steps
        # same answer: compare against the NumPy result after t_steps
        ref_a, _ = numpy_gd(s.a, s.theta, t.b, t.w, lr, 50)
        ours = es.gradient_descent("erf", t, s, lr=lr, max_steps=50, save_every=50).final.a
        assert np.allclose(np.asarray(ours), ref_a, atol=1e-10)
        rows.append(dict(bench="GD single instance", size=f"k=d={k}", steps=steps,
                         autodiff_steps_per_s=steps / t_es, closed_form_steps_per_s=steps / t_cf,
                         torch_steps_per_s=steps / t_torch, numpy_steps_per_s=steps / t_np,
                         autodiff_vs_torch=t_torch / t_es, closed_form_vs_torch=t_torch / t_cf,
                         closed_form_vs_numpy=t_np / t_cf, compile_s=max(times["autodiff_compile"],
                                                                          times["closed_form_compile"])))
    return rows


def bench_flow(sizes, t1):
    from scipy.integrate import solve_ivp

    rows = []
    for k in sizes:
        t, s = problem(k, k)
        kw = dict(t1=t1, rtol=1e-6, atol=1e-8, gtol=0.0, n_save=2)
        t0 = time.perf_counter()
        es.gradient_flow("erf", t, s, **kw).final.a.block_until_ready()
        compile_s = time.perf_counter() - t0
        t_es = timeit(lambda: es.gradient_flow("erf", t, s, **kw).final.a.block_until_ready())
        b, w = np.asarray(t.b), np.asarray(t.w)

        def rhs(_, y):
            ga, gt = numpy_erf_grad(y[:k], y[k:].reshape(k, k), b, w)
            return -np.concatenate([ga, gt.ravel()])

        y0 = np.concatenate([np.asarray(s.a), np.asarray(s.theta).ravel()])
        sol = [None]

        def run():
            sol[0] = solve_ivp(rhs, (0, t1), y0, method="RK45", rtol=1e-6, atol=1e-8)

        t_sp = timeit(run, 1)
        ours = es.gradient_flow("erf", t, s, **kw).final
        err = float(np.max(np.abs(np.concatenate([np.asarray(ours.a), np.asarray(ours.theta).ravel()])
                                  - sol[0].y[:, -1])))
        # compile time of the default program too (stopping rule on, 101 saves): what a user's first call costs
        t0 = time.perf_counter()
        es.gradient_flow("erf", t, s, t1=t1).final.a.block_until_ready()
        first = time.perf_counter() - t0
        t_def = timeit(lambda: es.gradient_flow("erf", t, s, t1=t1).final.a.block_until_ready())
        rows.append(dict(bench="gradient flow", size=f"k=d={k}, t1={t1:g}", earnshaw_s=t_es, scipy_rk45_s=t_sp,
                         ratio_vs_scipy=t_sp / t_es, max_abs_diff=err, compile_s=compile_s - t_es,
                         compile_default_s=first - t_def))
    return rows


def bench_batch(batches, steps):
    rows = []
    k = d = 10
    for B in batches:
        t, s = problem(k, d, batch=B)
        row = dict(bench="batched GD", size=f"k=d=10, seeds={B}", steps=steps)
        for grad in ("autodiff", "closed_form"):
            def run():
                es.gradient_descent("erf", t, s, lr=0.01, max_steps=steps, save_every=steps,
                                    grad=grad).final.a.block_until_ready()
            run()
            row[f"{grad}_instance_steps_per_s"] = B * steps / timeit(run, 2)
        rows.append(row)
    # PyTorch batched by hand (the fair batched baseline): bmm over seeds
    if torch is not None:
        B = max(batches)
        t, s = problem(k, d, batch=B)
        a = torch.tensor(np.asarray(s.a), requires_grad=True)
        th = torch.tensor(np.asarray(s.theta), requires_grad=True)
        bb, ww = torch.tensor(np.asarray(t.b)), torch.tensor(np.asarray(t.w))

        def gram(U, V):
            c = U @ V.transpose(-1, -2)
            nu = (U * U).sum(-1)[..., :, None]
            nv = (V * V).sum(-1)[..., None, :]
            return (2 / math.pi) * torch.asin(2 * c / torch.sqrt((1 + 2 * nu) * (1 + 2 * nv)))

        def torch_steps(n):
            for _ in range(n):
                K, Bm = gram(th, th), gram(th, ww)
                loss = (torch.einsum("bi,bij,bj->b", a, K, a) - 2 * torch.einsum("bi,bij,j->b", a, Bm, bb)).sum()
                ga, gt = torch.autograd.grad(loss, (a, th))
                with torch.no_grad():
                    a.sub_(0.01 * ga)
                    th.sub_(0.01 * gt)

        n = 20
        el = timeit(lambda: torch_steps(n), 1)
        rows.append(dict(bench="batched GD, PyTorch (bmm by hand)", size=f"k=d=10, seeds={B}", steps=n,
                         instance_steps_per_s=B * n / el))
    return rows


def bench_hessian(sizes):
    rows = []
    for k in sizes:
        t, s = problem(k, k)
        t0 = time.perf_counter()
        es.hessian("erf", t, s).block_until_ready()
        compile_s = time.perf_counter() - t0
        # best of many: a call is milliseconds, and the first few after compiling vary 2x on this VM
        t_es = timeit(lambda: es.hessian("erf", t, s).block_until_ready(), 50)
        b, w = torch.tensor(np.asarray(t.b)), torch.tensor(np.asarray(t.w))

        def f(x):
            return torch_erf_loss(x[:k], x[k:].reshape(k, k), b, w)

        x = torch.tensor(np.concatenate([np.asarray(s.a), np.asarray(s.theta).ravel()]))
        t_t = timeit(lambda: torch.autograd.functional.hessian(f, x), 50 if k < 20 else 5)  # best of many too
        H_t = torch.autograd.functional.hessian(f, x).numpy()
        H_e = np.asarray(es.hessian("erf", t, s))
        assert np.allclose(H_t, H_e, atol=1e-9)
        rows.append(dict(bench="Hessian", size=f"k=d={k} (n={k + k * k})", earnshaw_ms=1e3 * t_es,
                         torch_ms=1e3 * t_t, ratio_vs_torch=t_t / t_es, compile_s=compile_s - t_es))
    return rows


def print_rows(rows):
    """One table per kind of benchmark (rows sharing their columns)."""
    from rich.console import Console
    from rich.table import Table

    groups = {}
    for r in rows:
        groups.setdefault(tuple(r), []).append(r)
    for cols, rs in groups.items():
        table = Table(title=rs[0]["bench"])
        for c in cols[1:]:
            table.add_column(c.replace("_", " "), justify="right")
        for r in rs:
            table.add_row(*(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols[1:]))
        Console(width=160).print(table)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a minute")
    ap.add_argument("--out", default=None,
                    help="JSON file for the results (default: benchmarks/results/dynamics.json, written only by a "
                         "full run, so a --quick run keeps the record)")
    args = ap.parse_args(argv)
    if torch is None:
        raise SystemExit("PyTorch is needed for the baselines: make bench (installs torch==2.13.0)")
    torch.set_num_threads(2)
    rows = []
    if args.quick:
        rows += bench_gd([5, 20], lambda k: 2000)
        rows += bench_flow([5], 50.0)
        rows += bench_batch([1, 100, 1000], 200)
        rows += bench_hessian([5, 10])
    else:
        rows += bench_gd([5, 20, 100], lambda k: 20_000 if k < 100 else 2000)
        rows += bench_flow([5, 20], 100.0)
        rows += bench_batch([1, 10, 100, 1000, 10_000], 200)
        rows += bench_hessian([5, 10, 20])
    print_rows(rows)
    if args.out is None and args.quick:
        return rows
    out = pathlib.Path(args.out) if args.out else pathlib.Path(__file__).parent / "results" / "dynamics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(rows=rows, environment={"jax": jax.__version__, "torch": torch.__version__,
                                                           "backend": jax.default_backend()}), indent=2))
    os.replace(tmp, out)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()

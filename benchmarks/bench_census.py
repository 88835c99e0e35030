"""The Safran-Shamir census against the code a user would otherwise write, in one run, with the ratio.

* the full pipeline of ``earnshaw census safran-shamir`` for one cell (k = 8, n = k, 1000 seeds): GD to the
  per-unit gradient threshold 1.6e-10 (on F = L / 2, step 0.1), Newton polish, grouping modulo the symmetries,
  certificates; target < 60 s on the project's 2-core machine;
* its GD part against a batched PyTorch loop (float64) on the same closed-form ReLU gradient and stopping rule:
  one tensor of all seeds, stepped until every seed has met the threshold (converged seeds frozen), which is
  what one writes by hand;
* ``--k20``: the k = 20 cell (1000 seeds), target < 15 minutes.

Run: ``python -m benchmarks.bench_census [--seeds 1000] [--k20]``; the printed lines go to
``benchmarks/results/census.txt`` (appended, with the date and load; rendered on the benchmarks page).
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

try:
    import torch

    torch.set_default_dtype(torch.float64)
except ImportError:  # pragma: no cover
    torch = None

from earnshaw.experiments.census import Cell, cell_problem, census_cell, preset  # noqa: E402
from earnshaw.experiments.census.descend import descend  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "census.txt"


def torch_relu_grad(th, w):
    """dF/dtheta of F = L / 2 for a = b = 1 (closed form): ``sum_j grad_1 Phi(th_i, th_j) - sum_j grad_1 Phi(th_i,
    w_j)`` with ``grad_1 Phi(u, v) = ((pi - alpha) v + |v| sin(alpha) u / |u|) / (2 pi)``; ``th (B, n, d)``."""
    def parts(U, V):
        nu = (U * U).sum(-1)
        nv = (V * V).sum(-1)
        c = U @ V.transpose(-1, -2)
        root = torch.sqrt(nu[..., :, None] * nv[..., None, :])
        cos = torch.clamp(c / root, -1.0, 1.0)
        sin = torch.sqrt(torch.clamp(1 - cos * cos, min=0.0))
        alpha = torch.atan2(sin, cos)
        A = math.pi - alpha
        S = torch.sqrt(nv[..., None, :] / nu[..., :, None]) * sin
        return A, S
    AK, SK = parts(th, th)
    eye = torch.eye(th.shape[-2], dtype=torch.bool, device=th.device)
    AK = torch.where(eye, torch.full_like(AK, math.pi), AK)
    SK = torch.where(eye, torch.zeros_like(SK), SK)
    W = w.expand(th.shape[0], *w.shape)
    AB, SB = parts(th, W)
    force = AK @ th - AB @ W + (SK.sum(-1) - SB.sum(-1))[..., None] * th
    return force / (2 * math.pi)


def torch_gd(theta0, w, lr, gtol, max_steps, device="cpu"):
    """Batched GD until every seed's largest per-unit gradient is below gtol (converged seeds stop moving);
    ``device``: where PyTorch runs (``"cuda"`` on a GPU machine)."""
    th = torch.tensor(theta0, device=device)
    wt = torch.tensor(w, device=device)
    done = torch.zeros(th.shape[0], dtype=torch.bool, device=device)
    steps = torch.zeros(th.shape[0], dtype=torch.int64, device=device)
    with torch.no_grad():
        for _ in range(max_steps):
            g = torch_relu_grad(th, wt)
            unit = torch.sqrt((g * g).sum(-1)).max(-1).values
            done |= unit < gtol
            if bool(done.all()):
                break
            th = torch.where(done[:, None, None], th, th - lr * g)
            steps += (~done).long()
    return th.cpu().numpy(), steps.cpu().numpy()


def bench_cell(k, seeds, torch_too=True, torch_device="cpu"):
    cfg = preset("safran-shamir", k=[k], extra_units=[0], seeds=seeds)
    problem, starts = cell_problem(cfg, Cell("relu", k, k))
    out = {}
    # warm-up: compile the programs on a few seeds (compile time is reported separately)
    t0 = time.perf_counter()
    # compile: one short round of the full-size batch (the GD program) and a small census (polish, group,
    # certify); the smaller batches of the last stragglers compile inside the timed run
    head = jax.tree_util.tree_map(lambda x: x[:cfg.chunk], starts)
    descend(problem, head, lr=cfg.lr / 2, gtol=2 * cfg.gtol, max_steps=10, round_steps=10,
            chunk=cfg.chunk)
    small = preset("safran-shamir", k=[k], extra_units=[0], seeds=8, max_steps=cfg.round_steps)
    census_cell(small.model_dump_json(), "relu", k, k)
    out["compile_warmup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = census_cell(cfg.model_dump_json(), "relu", k, k)
    out["pipeline_s"] = time.perf_counter() - t0
    cell = res["rows"][0]
    out.update(gd_s=res["timings"]["gd_s"], group_s=res["timings"]["group_s"], certify_s=res["timings"]["certify_s"],
               spurious_rate=cell["spurious_rate"], spurious_ci=[cell["spurious_lo"], cell["spurious_hi"]],
               families=cell["families"], median_steps=cell["median_steps"], max_steps=cell["max_steps_taken"])
    out["families_table"] = [dict(kind=r["kind"], F=r["F"], index=r["index"], count=r["count"],
                                  certificate=r["certificate"]) for r in res["rows"][1:]]
    out["seed_steps"] = cell["seed_steps"]
    print(f"   pipeline done: {out['pipeline_s']:.1f} s (GD {out['gd_s']:.1f}, group {out['group_s']:.1f}, certify "
          f"{out['certify_s']:.1f}), {cell['seed_steps']} seed-steps", flush=True)
    if torch_too and torch is not None:
        torch.set_num_threads(2)
        t0 = time.perf_counter()
        th, steps = torch_gd(np.asarray(starts.theta), np.eye(k), cfg.lr, cfg.gtol, cfg.max_steps, torch_device)
        out["torch_gd_s"] = time.perf_counter() - t0
        # earnshaw's GD alone, compiled (same starts, same rule) for the ratio
        t0 = time.perf_counter()
        run = descend(problem, starts, lr=cfg.lr / 2, gtol=2 * cfg.gtol, max_steps=cfg.max_steps)
        out["earnshaw_gd_s"] = time.perf_counter() - t0
        out["gd_ratio_torch_over_earnshaw"] = out["torch_gd_s"] / out["earnshaw_gd_s"]
        out["same_spurious_seeds"] = float(np.mean((run.loss / 2 >= cfg.spurious) ==
                                                   (_relu_F(th, np.eye(k)) >= cfg.spurious)))
    return out


def _relu_F(th, w):
    """F = L / 2 of students ``th (B, n, d)`` (a = b = 1) against ``w``, in NumPy."""
    def gram(U, V):
        nu, nv = (U * U).sum(-1), (V * V).sum(-1)
        c = U @ np.swapaxes(V, -1, -2)
        root = np.sqrt(nu[..., :, None] * nv[..., None, :])
        cos = np.clip(c / root, -1, 1)
        alpha = np.arccos(cos)
        return (root * np.sin(alpha) + (np.pi - alpha) * c) / (2 * np.pi)
    W = np.broadcast_to(w, (th.shape[0],) + w.shape)
    return 0.5 * (gram(th, th).sum((-2, -1)) - 2 * gram(th, W).sum((-2, -1)) + gram(W, W).sum((-2, -1)))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--k20", action="store_true", help="also the k = 20 cell (minutes)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-device", default="cpu", help="where the PyTorch loop runs: cpu, or cuda on a GPU machine")
    args = ap.parse_args(argv)
    lines = []

    def say(text):
        print(text, flush=True)
        lines.append(text)

    for k in [args.k] + ([20] if args.k20 else []):
        r = bench_cell(k, args.seeds, torch_too=not args.no_torch and k == args.k, torch_device=args.torch_device)
        say(f"k = {k}, {args.seeds} seeds: pipeline {r['pipeline_s']:.1f} s (GD {r['gd_s']:.1f}, polish+group "
            f"{r['group_s']:.1f}, certify {r['certify_s']:.1f}; compile warm-up {r['compile_warmup_s']:.1f} s); "
            f"spurious rate {r['spurious_rate']:.3f} [{r['spurious_ci'][0]:.3f}, {r['spurious_ci'][1]:.3f}], "
            f"{r['families']} families, {r['seed_steps']} seed-steps")
        if "torch_gd_s" in r:
            say(f"   GD alone: earnshaw {r['earnshaw_gd_s']:.1f} s ({jax.default_backend()}), PyTorch batched loop "
                f"{r['torch_gd_s']:.1f} s ({args.torch_device}) "
                f"(ratio {r['gd_ratio_torch_over_earnshaw']:.2f}x); same spurious verdicts on "
                f"{100 * r['same_spurious_seeds']:.1f}% of seeds")
        for f in r["families_table"]:
            say(f"   {f['kind']:<24} F = {f['F']:.6e} index {f['index']} count {f['count']}: {f['certificate']}")
    RESULTS.parent.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    with RESULTS.open("a") as fh:  # earlier measurements stay: the file is a log, newest last
        fh.write(f"\nMeasured {stamp} (load average {load} at the end):\n" + "\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

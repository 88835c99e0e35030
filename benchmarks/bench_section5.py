"""Section 5 training: earnshaw (jit + lax.scan + vmap over seeds) against a PyTorch eager loop.

Both train the same students on the same data (the seeds of one Table 2 cell, the full
preset's d, n_train and lr) for the same number of full-batch GD steps. The PyTorch loop is
written as a user would write it: a loop over seeds, and per step a forward pass, ``backward()``,
and an in-place update under ``no_grad``, with PyTorch's default threading. The script checks
that both runs end at the same training MSE, then prints the time ratio per cell.

    python -m benchmarks.bench_section5                      # the 20 Table 2 cells
    python -m benchmarks.bench_section5 --cells 2x20 --steps 2000

The earnshaw time is the steady state (the compiled chunk called again, as the 99 later chunks of a
10^6-step run are); the time including compilation is printed too. Each side runs ``--repeat`` times,
interleaved, and the best time counts (as ``timeit`` does): PyTorch's eager loop varies by up to 1.5x
from run to run on this machine, and the best run is the fair figure for both.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def torch_train(params, x, y, lr: float, steps: int, act: str = "sigmoid_pm1", device: str = "cpu"):
    """PyTorch eager GD, one seed after another; returns (final train MSE per seed, seconds).

    ``device``: where PyTorch runs (``"cuda"`` on a GPU machine); reading each seed's final MSE waits for it."""
    import torch

    finals = []
    t0 = time.perf_counter()
    for s in range(x.shape[0]):
        ws = [torch.tensor(np.asarray(p[s]), requires_grad=True, device=device) for p in params]
        xs, ys = torch.tensor(np.asarray(x[s]), device=device), torch.tensor(np.asarray(y[s]), device=device)
        for _ in range(steps):
            h = xs
            for w in ws:
                h = h @ w.T
                h = 2 * torch.sigmoid(h) - 1 if act == "sigmoid_pm1" else torch.tanh(h)
            loss = ((h[:, 0] - ys) ** 2).sum()
            for w in ws:
                w.grad = None
            loss.backward()
            with torch.no_grad():
                for w in ws:
                    w -= lr * w.grad
        with torch.no_grad():
            h = xs
            for w in ws:
                h = h @ w.T
                h = 2 * torch.sigmoid(h) - 1 if act == "sigmoid_pm1" else torch.tanh(h)
            finals.append(float(((h[:, 0] - ys) ** 2).mean()))
    return np.asarray(finals), time.perf_counter() - t0


def jax_train(params, x, y, lr: float, steps: int, act: str = "sigmoid_pm1"):
    """earnshaw's compiled chunk; returns (final train MSE, seconds steady, seconds incl. compile).

    The first call compiles; the steady time is that of the second."""
    import jax

    from earnshaw.experiments.section5.deep import make_train_chunk

    chunk = make_train_chunk(steps, lr, act, "sum")
    t0 = time.perf_counter()
    res = jax.block_until_ready(chunk(params, x, y, x[:, :2], y[:, :2]))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = jax.block_until_ready(chunk(params, x, y, x[:, :2], y[:, :2]))
    steady = time.perf_counter() - t0
    return np.asarray(res.final_train_mse), steady, first


def packed_vs_unpacked(base, depths, steps: int, repeat: int) -> dict:
    """Per depth: ms per GD step of all its widths trained as one zero-padded program, against the sum of
    the one-program-per-cell times, and the largest difference of their final training MSEs."""
    import jax
    import jax.numpy as jnp

    from earnshaw.experiments.section5.cells import _cell_data, pad_width

    widths = sorted(base.widths)
    out = {}
    print(f"{'depth':>5} {'widths':>14} {'unpacked ms/step':>17} {'packed ms/step':>15} {'ratio':>7} "
          f"{'max |dMSE|':>10}")
    for depth in depths:
        parts = [_cell_data(base, depth, w) for w in widths]
        sep, per = 0.0, []
        for p in parts:
            m, t, _ = jax_train(p[0], p[1], p[2], base.lr, steps, base.activation)
            for _ in range(repeat - 1):
                t = min(t, jax_train(p[0], p[1], p[2], base.lr, steps, base.activation)[1])
            sep += t
            per.append(m)
        params = [jnp.concatenate(ws) for ws in zip(*(pad_width(p[0], widths[-1]) for p in parts))]
        x, y = jnp.concatenate([p[1] for p in parts]), jnp.concatenate([p[2] for p in parts])
        m, t, _ = jax_train(params, x, y, base.lr, steps, base.activation)
        for _ in range(repeat - 1):
            t = min(t, jax_train(params, x, y, base.lr, steps, base.activation)[1])
        diff = float(np.max(np.abs(m - np.concatenate(per))))
        out[depth] = (1e3 * sep / steps, 1e3 * t / steps)
        print(f"{depth:>5} {','.join(map(str, widths)):>14} {1e3 * sep / steps:>17.3f} {1e3 * t / steps:>15.3f} "
              f"{sep / t:>6.2f}x {diff:>10.2e}", flush=True)
    full = base.steps if base.steps > 1 else 1_000_000
    print(f"depths {depths} x widths {widths}, {full:,} steps, {base.seeds} seeds, from these rates, one task after another: "
          f"unpacked {sum(u for u, _ in out.values()) * full / 3.6e6:.2f} h, "
          f"packed {sum(p for _, p in out.values()) * full / 3.6e6:.2f} h ({jax.default_backend()})")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", default="all", help="'all' (Table 2) or comma list like 2x20,5x40 (depth x width)")
    ap.add_argument("--steps", type=int, default=0, help="GD steps per cell (default: 500 at depth <= 3, else 100)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side per cell (interleaved); best counts")
    ap.add_argument("--n-train", type=int, default=10_000)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch.set_num_threads (0: PyTorch's default; 1 is steadier on a loaded machine)")
    ap.add_argument("--devices", type=int, default=0,
                    help="XLA CPU devices earnshaw splits the seeds over (0: as `earnshaw reproduce` does, "
                         "earnshaw.experiments.section5.deep.cpu_devices_for: one per seed if every cell has depth 2, else one per core)")
    ap.add_argument("--packed", action="store_true",
                    help="also time every depth's widths packed into one zero-padded program against one program "
                         "per cell (what `earnshaw reproduce --packed` does)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch loop (e.g. on a GPU machine whose "
                                                             "torch is a CPU wheel)")
    ap.add_argument("--torch-device", default="cpu", help="where the PyTorch loop runs: cpu, or cuda on a GPU "
                                                          "machine (earnshaw runs on JAX's default device)")
    args = ap.parse_args(argv)

    import jax

    from earnshaw.experiments.section5.deep import cpu_devices_for
    from earnshaw.experiments.section5 import PRESETS
    from earnshaw.experiments.section5.cells import _cell_data

    # both sides get the whole machine: PyTorch its default intra-op threads, earnshaw its CPU devices
    cells = (PRESETS["table2"]["full"].cells if args.cells == "all"
             else [tuple(int(v) for v in c.split("x")) for c in args.cells.split(",")])
    jax.config.update("jax_num_cpu_devices", args.devices or cpu_devices_for(args.seeds, [dp for dp, _ in cells]))

    base = PRESETS["table2"]["full"].replace(seeds=args.seeds, n_train=args.n_train, n_test=16, lr=args.lr)
    if args.packed:
        depths = sorted({dp for dp, _ in cells})
        print(f"jax {jax.__version__} ({jax.default_backend()}, {jax.local_device_count()} devices: "
              f"{jax.devices()[0].device_kind}); packed widths, seeds={args.seeds}, n_train={args.n_train}")
        packed_vs_unpacked(base.replace(widths=tuple(sorted({w for _, w in cells}))), depths,
                           args.steps or 100, args.repeat)
    if args.no_torch:
        return {}
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    print(f"jax {jax.__version__} ({jax.default_backend()}, {jax.local_device_count()} devices), "
          f"torch {torch.__version__} "
          f"({args.torch_device}, {torch.get_num_threads()} threads); seeds={args.seeds}, n_train={args.n_train}, lr={args.lr:g} (sum), "
          f"float32; best of {args.repeat} runs each")
    print(f"{'cell':>8} {'steps':>6} {'torch s':>9} {'earnshaw s':>11} {'+compile':>9} {'ratio':>7} "
          f"{'ms/step jax':>11} {'max |dMSE|':>10}")
    ratios = {}
    for depth, width in cells:
        steps = args.steps or (500 if depth <= 3 else 100)
        params, x, y, _, _ = _cell_data(base, depth, width)
        mj, tj, tj_first = jax_train(params, x, y, args.lr, steps)
        mt, tt = torch_train(params, x, y, args.lr, steps, device=args.torch_device)
        for _ in range(args.repeat - 1):
            tj = min(tj, jax_train(params, x, y, args.lr, steps)[1])
            tt = min(tt, torch_train(params, x, y, args.lr, steps, device=args.torch_device)[1])
        ratios[(depth, width)] = tt / tj
        print(f"{depth:>3}x{width:<4} {steps:>6} {tt:>9.3f} {tj:>11.3f} {tj_first:>9.3f} {tt / tj:>6.2f}x "
              f"{1e3 * tj / steps:>11.3f} {np.max(np.abs(mj - mt)):>10.2e}", flush=True)
    r = np.asarray(list(ratios.values()))
    print(f"speed-up over the PyTorch eager loop: min {r.min():.2f}x, geometric mean {np.exp(np.log(r).mean()):.2f}x, "
          f"max {r.max():.2f}x")
    if (2, 20) in ratios:
        print(f"depth 2 width 20: {ratios[(2, 20)]:.2f}x (target >= 5x)")
    return ratios


if __name__ == "__main__":
    main()

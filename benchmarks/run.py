"""``make bench``: every benchmark, each against the code a user would otherwise write, ratios printed."""
from __future__ import annotations

import sys

from benchmarks import (bench_census, bench_compile, bench_dynamics, bench_online, bench_order, bench_potentials,
                        bench_section5)


def main():
    quick = "--quick" in sys.argv
    print("== population-loss dynamics, flow, batching, Hessian ==", flush=True)
    bench_dynamics.main(["--quick"] if quick else [])
    print("\n== order-parameter GD against direct population GD (k = 10) ==", flush=True)
    bench_order.main(["--dims", "100,1000"] if quick else [])
    print("\n== online SGD simulation against a batched PyTorch loop; the ODE of K = M = 10 ==", flush=True)
    bench_online.main(["--steps", "2000", "--seeds", "4"] if quick else [])
    print("\n== potentials without a closed form (fast Hermite table, quadrature) against erf ==", flush=True)
    bench_potentials.main(["--quick"] if quick else [])
    print("\n== compile time of every solver program (fresh process each) ==", flush=True)
    bench_compile.main(["--sizes", "5"] if quick else [])
    print("\n== Section 5 training (deep networks) ==", flush=True)
    bench_section5.main(["--cells", "2x5,2x20,3x20,5x20,9x20"] + (["--steps", "100"] if quick else []))
    print("\n== Safran-Shamir census (k = 8, 1000 seeds), GD against a batched PyTorch loop ==", flush=True)
    bench_census.main(["--seeds", "200"] if quick else [])


if __name__ == "__main__":
    main()

"""``earnshaw reproduce table2|figure1``: the paper's Section 5 experiments, resumable, with a progress bar."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import sys
from typing import Optional

import typer
from rich.table import Table

from earnshaw._cli.common import backend_options, console, err_console, fail, use_cpu_cores


def _fmt(mean: float, sd: float) -> str:
    return f"{mean:.4f}" if not math.isfinite(sd) else f"{mean:.4f} ± {sd:.4f}"


def results_table(target: str, rows: list, cfg) -> Table:
    """Our numbers (mean ± sd over seeds) beside the paper's."""
    if target == "table2":
        widths = sorted({r["width"] for r in rows})
        t = Table(title=f"Table 2, test MSE: ours (mean ± sd over {cfg.seeds} seeds, {cfg.steps:,} steps) / paper")
        t.add_column("depth", justify="right")
        for w in widths:
            t.add_column(f"width {w}", justify="right")
        for depth in sorted({r["depth"] for r in rows}):
            cells = {r["width"]: r for r in rows if r["depth"] == depth}
            t.add_row(str(depth), *[
                f"{_fmt(cells[w]['test_mse_mean'], cells[w]['test_mse_sd'])} / {cells[w]['paper_test_error']:.4f}"
                if w in cells else "" for w in widths])
        return t
    t = Table(title=f"Figure 1, depth 2: final MSE after {cfg.steps:,} steps ({cfg.seeds} seeds); paper: < 0.002")
    for col in ("width", "test MSE (mean ± sd)", "min..max", "train MSE", "random student"):
        t.add_column(col, justify="right")
    for r in sorted(rows, key=lambda r: r["width"]):  # --widths 20,5 runs 20 first; the table reads upwards
        t.add_row(str(r["width"]), _fmt(r["test_mse_mean"], r["test_mse_sd"]),
                  f"{r['test_mse_min']:.4f}..{r['test_mse_max']:.4f}", f"{r['train_mse_mean']:.4f}",
                  f"{r['random_student_test_mse']:.3f}")
    return t


def show_results(run, as_json: bool):
    """``earnshaw results`` on a reproduction folder: the table reproduce printed."""
    from earnshaw.experiments import section5 as s5

    target, cfg, rows = s5.load_rows(run.path)
    if not rows:
        fail(f"{run.path} has no finished cell yet: continue it with earnshaw reproduce {target} --resume {run.path}")
    if as_json:
        print(json.dumps({"run_dir": str(run.path), "rows": rows}, indent=2))
    else:
        console.print(results_table(target, rows, cfg))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min" if seconds >= 60 \
        else f"{seconds:.1f} s"


def run_estimate(target: str, cfg, probe: int, as_json: bool, quiet: bool):
    """``--estimate``: time every task of ``cfg`` briefly here and print the protocol's cost."""
    from earnshaw.experiments.section5.estimate import estimate, makespan

    say = None if quiet else (lambda name: err_console.print(f"timing {name} ({probe} steps)"))
    costs = estimate(cfg, probe=probe, progress=say)
    total = sum(c.seconds for c in costs)
    workers = sorted({1, 2, 4, 8, len(costs)})
    spans = {n: makespan([c.seconds for c in costs], n) for n in workers}
    if as_json:
        print(json.dumps({"target": target, "steps": cfg.steps, "packed": cfg.packed, "seconds_total": total,
                          "seconds_on_workers": {str(n): s for n, s in spans.items()},
                          "tasks": [dict(dataclasses.asdict(c), seconds=c.seconds) for c in costs]}, indent=2))
        return
    t = Table(title=f"{target}: estimated cost of {cfg.steps:,} steps x {cfg.seeds} seeds per cell on this machine "
                    f"({'packed' if cfg.packed else 'one program per cell'})")
    for col in ("task", "ms / step (all seeds)", "setup", "predicted"):
        t.add_column(col, justify="right")
    for c in costs:
        t.add_row(c.name, f"{1e3 * c.seconds_per_step:.3f}", _hours(c.setup_seconds), _hours(c.seconds))
    console.print(t)
    console.print(f"total here (one task after another): {_hours(total)}")
    console.print("on N Ray workers like this machine (longest task first): " +
                  ", ".join(f"N={n}: {_hours(s)}" for n, s in spans.items()))


def register(app: typer.Typer):
    @app.command()
    def reproduce(
        target: str = typer.Argument(..., help="what to reproduce: table2 or figure1"),
        quick: bool = typer.Option(False, "--quick", help="the quick preset (minutes) instead of the full one"),
        preset: Optional[str] = typer.Option(None, "--preset", help="preset by name: full, quick or ci"),
        seeds: Optional[int] = typer.Option(None, "--seeds", help="runs per cell"),
        seed: Optional[int] = typer.Option(None, "--seed", help="root seed of the grid"),
        d: Optional[int] = typer.Option(None, "--d", help="input dimension (default 10)"),
        n_train: Optional[int] = typer.Option(None, "--n-train", help="training samples per seed (default 10000)"),
        n_test: Optional[int] = typer.Option(None, "--n-test", help="test samples per seed (default 10000)"),
        lr: Optional[float] = typer.Option(None, "--lr", help="GD step on the loss (default 1e-5 with --reduction sum)"),
        steps: Optional[int] = typer.Option(None, "--steps", help="GD iterations (full preset: 1000000)"),
        chunk: Optional[int] = typer.Option(None, "--chunk", help="steps per compiled scan (default 10000)"),
        reduction: Optional[str] = typer.Option(None, "--reduction", help="loss reduction: sum (default) or mean"),
        activation: Optional[str] = typer.Option(None, "--activation", help="sigmoid_pm1 (default) or tanh"),
        depths: Optional[str] = typer.Option(None, "--depths", help="comma-separated depths, e.g. 2,3"),
        widths: Optional[str] = typer.Option(None, "--widths", help="comma-separated widths, e.g. 5,10"),
        packed: Optional[bool] = typer.Option(None, "--packed/--no-packed",
                                              help="train all widths of a depth as one zero-padded program "
                                                   "(for accelerators; needs s(0) = 0)"),
        estimate: bool = typer.Option(False, "--estimate", help="time a short run of every cell here and print "
                                                                "what the protocol costs; runs nothing else"),
        probe: int = typer.Option(100, "--probe", help="GD steps timed per cell by --estimate"),
        workers: int = typer.Option(1, "--workers", help="cells trained at once, each in its own process"),
        backend: str = typer.Option("local", "--backend", help="local or ray (checkpoints need a file system "
                                                               "shared with the workers)"),
        address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (--backend ray)"),
        devices: Optional[int] = typer.Option(None, "--devices", help="XLA CPU devices for the seeds of a cell "
                                              "(default: one per core; one per seed, up to four per core, "
                                              "when every cell has depth 2; with --workers > 1 each worker "
                                              "uses one)"),
        checkpoint_every: float = typer.Option(30.0, "--checkpoint-every", min=0.0, help="seconds between a cell's parameter "
                                               "checkpoints (0: after every chunk)"),
        out: str = typer.Option("runs", "--out", help="parent folder of the run folder"),
        resume: Optional[str] = typer.Option(None, "--resume", help="continue this run folder"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bar or table"),
        as_json: bool = typer.Option(False, "--json", help="print the result rows as JSON"),
    ):
        """Reproduce the paper's Table 2 or Figure 1 (Section 5) into a resumable run folder."""
        from earnshaw.experiments.section5.deep import DivergenceError
        from earnshaw.experiments import section5 as s5

        backend_options(backend, address, workers)
        if target not in s5.TARGETS:
            fail(f"unknown target {target!r}; valid targets: {', '.join(s5.TARGETS)}")
        name = preset or ("quick" if quick else "full")
        if name not in s5.PRESETS[target]:
            fail(f"unknown preset {name!r}; valid presets: {', '.join(s5.PRESETS[target])}")
        try:
            def ints(text):
                return None if text is None else tuple(int(v) for v in text.split(",") if v.strip())

            cfg = s5.PRESETS[target][name].replace(
                seeds=seeds, seed=seed, d=d, n_train=n_train, n_test=n_test, lr=lr, steps=steps, chunk=chunk,
                reduction=reduction, activation=activation, depths=ints(depths), widths=ints(widths), packed=packed)
        except (ValueError, TypeError) as err:
            fail(str(err))
        overrides = [n for n, v in (("--preset", preset), ("--quick", quick or None), ("--seeds", seeds),
                                    ("--seed", seed), ("--d", d), ("--n-train", n_train), ("--n-test", n_test), ("--lr", lr),
                                    ("--steps", steps), ("--chunk", chunk), ("--reduction", reduction),
                                    ("--activation", activation), ("--depths", depths), ("--widths", widths),
                                    ("--packed", packed))
                     if v is not None]
        if resume is not None and overrides and not quiet:
            err_console.print(f"resuming {resume}: its config.toml is used; {', '.join(overrides)} ignored")
        elif not quiet:
            err_console.print(f"{target}, preset {name}: lr={cfg.lr:g} with reduction={cfg.reduction!r} and "
                              f"n_train={cfg.n_train} is a mean-loss step of {cfg.effective_step:g}")

        if workers <= 1:
            from earnshaw.experiments.section5.deep import cpu_devices_for

            now = cfg
            if resume is not None and (pathlib.Path(resume) / "config.toml").is_file():
                try:
                    now = s5.load_run_config(resume)[1]  # a resumed run keeps its own seeds and depths
                except (ValueError, TypeError, KeyError) as err:
                    fail(f"{resume}/config.toml: {err}")
            use_cpu_cores(devices if devices else cpu_devices_for(now.seeds, now.depths))

        if estimate:
            if resume is not None:
                fail("--estimate costs a protocol before it runs; give the preset and options, not --resume")
            if probe < 1:
                fail(f"--probe must be a positive number of steps, got {probe}")
            run_estimate(target, cfg, probe, as_json, quiet)
            return

        from earnshaw.runtime import Reporter

        state = {}
        progress = Reporter(target, unit="steps", enabled=not quiet)

        def on_event(event):
            kind = event["event"]
            if kind == "start":
                progress.start(len(event["cells"]) * event["steps"], len(event["done"]) * event["steps"])
                state["run_dir"] = event["run_dir"]
            elif kind == "chunk":
                progress.update(advance=event["chunk_steps"],
                                description=f"depth {event['depth']} width {event['width']}: "
                                            f"test MSE {event['test_mse']:.4f}")
            elif kind == "cell" and not quiet:
                row = event["row"]
                progress.print(f"  depth {row['depth']:>2} width {row['width']:>3}: test MSE "
                               f"{_fmt(row['test_mse_mean'], row['test_mse_sd'])} "
                               f"(paper {row['paper_test_error']:.4f})")

        try:
            with progress:
                result = s5.reproduce(target, cfg, out=out, resume=resume, progress=on_event, workers=workers,
                                      backend=backend, address=address, checkpoint_every=checkpoint_every)
        except DivergenceError as err:
            fail(str(err))
        except (ValueError, FileNotFoundError) as err:
            fail(str(err))
        except KeyboardInterrupt:
            where = state.get("run_dir", "the run folder")
            err_console.print(f"interrupted; continue with: earnshaw reproduce {target} --resume {where}")
            # XLA's threads may still be running the interrupted chunk, and tearing them down in a normal
            # interpreter exit can crash (SIGSEGV seen); every finished result is on disk, so leave at once
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        if as_json:
            print(json.dumps({"run_dir": result["run_dir"], "rows": result["rows"]}, indent=2))
            return
        if not quiet:
            console.print(results_table(target, result["rows"], result["config"]))
            console.print(f"wrote {result['run_dir']}/ ({target}.csv, {target}.png, cells/, meta.json, config.toml)")
            full = s5.PRESETS[target]["full"]
            if result["config"].steps < full.steps:
                # the paper's numbers are after 10^6 steps; a shorter run shows the pattern, not the values
                err_console.print(f"[yellow]note:[/] {result['config'].steps:,} steps, not the paper's {full.steps:,}: "
                                  "these errors are not converged, so compare the pattern (which cells are small, "
                                  "how error grows with width), not the values. The full preset is "
                                  f"`earnshaw reproduce {target}`.")

"""Sweeps: config validation, kill -9 and resume, the Ray backend, figures, the results table."""
import math
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from earnshaw.experiments.config import ConfigError, load_config, parse_config

EARNSHAW = [sys.executable, "-c", "from earnshaw.cli import main; main()"]

BASE = dict(activation="erf", seeds=4, teacher=dict(d=3, k=2))

TINY = textwrap.dedent("""
    name = "tiny"
    activation = "erf"
    seeds = 4
    save_paths = 2
    [teacher]
    d = 3
    k = 2
    [algorithm]
    name = "gradient_descent"
    options = { lr = 0.5, max_steps = 200 }
    [grid]
    student.init_scale = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5]
""")


def _error(data) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


# --- config validation ---------------------------------------------------------------------------------------

def test_config_rejects_typo_key():
    msg = _error(dict(BASE, teacher=dict(d=3, k=2, sclae=1.0)))
    assert msg.startswith("teacher.sclae: unknown key") and "scale" in msg
    assert _error(dict(BASE, seedz=3)).startswith("seedz: unknown key")


def test_config_rejects_negative_dimension():
    assert _error(dict(BASE, teacher=dict(d=-3, k=2))) == "teacher.d: must be >= 1 (got -3)"
    assert _error(dict(BASE, grid={"teacher": {"d": [3, -1]}})).startswith("grid.teacher.d[1]: must be >= 1")


def test_config_rejects_unknown_activation_and_algorithm_option():
    msg = _error(dict(BASE, activation="erff"))
    assert msg.startswith("activation: unknown activation 'erff'") and "erf" in msg and "relu" in msg
    msg = _error(dict(BASE, algorithm=dict(name="gradient_descent", options=dict(stepz=3))))
    assert msg.startswith("algorithm.options.stepz: unknown option") and "steps" in msg
    assert _error(dict(BASE, algorithm=dict(name="gd"))).startswith("algorithm.name: unknown algorithm 'gd'")
    assert _error(dict(BASE, grid={"teacher.x": [1]})).startswith("grid.teacher.x:")


def test_config_file_roundtrip(tmp_path):
    from earnshaw.experiments.config import to_toml
    from earnshaw.experiments.sweep import cells_of

    path = tmp_path / "c.toml"
    path.write_text(TINY)
    cfg = load_config(path)
    cells = cells_of(cfg)
    assert len(cells) == 8 and len({c.id for c in cells}) == 8
    (tmp_path / "again.toml").write_text(to_toml(cfg))
    again = load_config(tmp_path / "again.toml")
    assert again == cfg and [c.id for c in cells_of(again)] == [c.id for c in cells]
    for name in ("sweep_erf.toml", "run_erf.toml", "safran_shamir.toml"):
        load_config(pathlib.Path(__file__).parents[1] / "examples" / name)


def test_cli_reports_bad_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("d = 3", "d = -3"))
    proc = subprocess.run([*EARNSHAW, "sweep", str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode != 0
    assert "teacher.d: must be >= 1" in proc.stderr


# --- kill -9 and resume ----------------------------------------------------------------------------------------

def _comparable(rows):
    from earnshaw.experiments.sweep import TIME_COLUMNS

    out = []
    for r in sorted(rows, key=lambda r: (r["cell"], r["seed"])):
        out.append({k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()
                    if k not in TIME_COLUMNS})
    return out


def _diff(a, b) -> str:
    """The first few differing (cell, seed, column, value, value) of two comparable row lists."""
    out = [(x["cell"], x["seed"], k, x[k], y.get(k)) for x, y in zip(a, b) for k in x if x[k] != y.get(k)]
    return f"{len(a)} vs {len(b)} rows; differences: {out[:12]}"


def _done_lines(run: pathlib.Path):
    """``[time, session, "done", cell_id, seconds]`` per "done" line of the run folder's log."""
    return [line.split() for line in (run / "run.log").read_text().splitlines() if line.split()[2] == "done"]


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    from earnshaw import store
    from earnshaw.experiments.sweep import run_sweep

    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(TINY)
    run = tmp_path / "killed"
    proc = subprocess.Popen([*EARNSHAW, "sweep", str(cfg_path), "--resume", str(run), "--quiet", "--no-figures"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # --resume on a new folder starts it; kill -9 as soon as the first cell is committed and logged (a kill
    # between a cell's Parquet commit and its log line keeps the cell, but leaves the first session unlogged)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (run / "run.log").exists() and _done_lines(run):
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read()!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {f.stem for f in (run / "cells").glob("*.parquet") if not f.name.startswith(".")}
    assert 1 <= len(finished) < 8, "the kill should land mid-sweep"
    for f in (run / "cells").glob("*.parquet"):
        if not f.name.startswith("."):
            assert len(store.read_parquet(f)) == 4  # every committed file is whole

    resumed = subprocess.run([*EARNSHAW, "sweep", "--resume", str(run), "--json", "--no-figures"], cwd=tmp_path,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not list(run.glob("**/.*.tmp"))
    # its output is not a terminal: progress comes as plain lines (on stderr, beside the JSON on stdout)
    assert "[sweep] 8/8 cells 100%" in resumed.stderr and f"resuming {run}" in resumed.stderr

    # no cell computed twice: the resumed session computed exactly the cells the killed one had not finished
    log = _done_lines(run)
    sessions = list(dict.fromkeys(line[1] for line in log))
    assert len(sessions) == 2
    first = [line[3] for line in log if line[1] == sessions[0]]
    second = [line[3] for line in log if line[1] == sessions[1]]
    assert set(first) <= finished and not set(second) & finished
    # (a cell committed by the killed session just before the kill may have no log line: it is in `finished`)
    assert len(second) == len(set(second)) and len(set(first) | set(second) | finished) == 8
    assert len(finished - set(first)) <= 1  # at most the cell in flight at the kill went unlogged
    meta = store.read_json(run / "meta.json")
    assert meta["sessions"][-1]["cells_skipped"] == len(finished)
    assert sorted(meta["sessions"][-1]["cells_computed"]) == sorted(second)

    whole = tmp_path / "whole"
    out = run_sweep(load_config(cfg_path), whole, figures=False)
    assert len(out["computed"]) == 8
    a = _comparable(store.read_parquet(run / "results.parquet"))
    b = _comparable(store.read_parquet(whole / "results.parquet"))
    assert len(a) == 32 and a == b, _diff(a, b)

    # running again computes nothing
    again = run_sweep(load_config(cfg_path), whole, figures=False)
    assert again["computed"] == [] and len(again["skipped"]) == 8

    table = subprocess.run([*EARNSHAW, "results", str(whole)], capture_output=True, text=True, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "success [95% CI]" in table.stdout and "student.init_scale" in table.stdout
    assert table.stdout.count("[0.") + table.stdout.count("[1.") >= 8


def test_wilson_interval():
    from earnshaw.experiments.sweep import wilson_interval

    lo, hi = wilson_interval(10, 10)
    assert hi == pytest.approx(1.0) and 0.69 < lo < 0.73  # 0.7225
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(1 - hi) and 0.23 < lo < 0.24
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


# --- the Ray backend (on a real cluster: tests/test_ray.py) -------------------------------------------------------------------------------------------

def test_ray_backend_missing_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    from earnshaw.experiments.sweep import run_sweep

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(RuntimeError, match=r"earnshaw\[ray\]"):
        run_sweep(parse_config(BASE), tmp_path / "r", backend="ray")


# --- figures ---------------------------------------------------------------------------------------------------

def _not_blank(path):
    from PIL import Image

    path = pathlib.Path(path)
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    assert arr.size and len(np.unique(arr.reshape(-1, 3), axis=0)) > 1


def test_figure_functions_write_images(tmp_path):
    import earnshaw as es
    from earnshaw import plot

    rng = np.random.default_rng(0)
    figs = {
        "potential": plot.potential_profile(es.potential("erf")),
        "loss": plot.loss_curves(np.tile(np.geomspace(1e-2, 1e2, 20), (3, 1)), np.exp(-rng.random((3, 20)).cumsum(1)),
                                 labels=["a", "b", "a"]),
        "traj": plot.trajectories_2d(rng.normal(size=(2, 10, 2, 3)).cumsum(1), rng.normal(size=(2, 3))),
        "heat": plot.success_heatmap([dict(k=k, s=s, success=bool(rng.random() < 0.5)) for k in (2, 3)
                                      for s in (0.5, 1.0) for _ in range(4)], "k", "s"),
        "heat1": plot.success_heatmap([dict(k=k, success=k == 2) for k in (2, 3)], "k"),
        "spectra": plot.hessian_spectra(np.sort(rng.normal(size=(5, 8)), axis=1), labels=list("aabba")),
    }
    for name, fig in figs.items():
        path = tmp_path / f"{name}.png"
        fig.savefig(path)
        _not_blank(path)


def test_animation_has_distinct_frames(tmp_path):
    from PIL import Image, ImageSequence

    from earnshaw import plot

    t = np.linspace(0, 1, 6)[:, None, None]
    thetas = (1 - t) * np.array([[1.0, 0.0, 0.5], [-1.0, 0.5, 0.0]]) + t * np.array([[0.2, 0.9, 0], [0, -0.8, 0]])
    path = plot.animate_charges(thetas, np.array([[0.2, 0.9, 0.0], [0.0, -0.8, 0.0]]), tmp_path / "a.gif",
                                a=np.ones((6, 2)), b=np.array([1.0, -0.5]), ts=np.arange(6.0))
    _not_blank(path)
    with Image.open(path) as im:
        frames = {np.asarray(f.convert("RGB")).tobytes() for f in ImageSequence.Iterator(im)}
    assert len(frames) > 1


def test_run_figures_and_animate_cli(tmp_path):
    """`earnshaw run` on a one-cell config writes results and figures; `animate` writes a GIF."""
    from typer.testing import CliRunner

    from earnshaw.cli import app

    cfg = tmp_path / "one.toml"
    cfg.write_text(TINY.split("[grid]")[0])  # same shapes as the sweep above: reuses its compiled programs
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    (run,) = list((tmp_path / "runs").iterdir())
    for name in ("potential", "loss_curves", "trajectories", "hessian_spectra"):
        _not_blank(run / "figures" / f"{name}.png")
    gif = tmp_path / "seed1.gif"
    proc = subprocess.run([*EARNSHAW, "animate", str(run), "--seed", "1", "--out", str(gif), "--fps", "20"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from PIL import Image, ImageSequence

    with Image.open(gif) as im:
        assert len({np.asarray(f.convert("RGB")).tobytes() for f in ImageSequence.Iterator(im)}) > 1
    bad = CliRunner().invoke(app, ["animate", str(run), "--seed", "7"])
    assert bad.exit_code != 0 and "save_paths" in bad.output

"""``earnshaw census`` end to end on a shrunk Safran-Shamir preset, its resume, and the GD it runs."""
import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import earnshaw as es
from earnshaw.experiments.census import Cell, cell_problem, preset
from earnshaw.experiments.census.descend import descend

EARNSHAW = [sys.executable, "-c", "from earnshaw.cli import main; main()"]


def _run(*args, cwd, ok=True):
    proc = subprocess.run([*EARNSHAW, *args], capture_output=True, text=True, cwd=cwd, timeout=900)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def census_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    proc = _run("census", "safran-shamir", "--k", "3", "--extra-units", "0", "--seeds", "12", "--out", str(out),
                cwd=out)
    return next(out.glob("safran-shamir-*")), proc


def test_census_writes_tables_figures_and_counts_every_seed(census_run):
    folder, proc = census_run
    for name in ("census.md", "census.json", "cells.csv", "families.csv", "results.parquet", "config.toml"):
        assert (folder / name).is_file(), name
    figs = {p.name for p in (folder / "figures").glob("*.png")}
    assert {"spurious_rate.png", "family_losses.png", "basins.png", "curves-relu-k3-n3.png"} <= figs
    data = json.loads((folder / "census.json").read_text())
    cell, fams = data["cells"][0], data["families"]
    assert cell["seeds"] == 12 and sum(f["count"] for f in fams) == 12  # every seed in one family
    assert sum(f["fraction"] for f in fams) == pytest.approx(1.0)
    # the protocol's rule: every seed converged to the per-unit threshold (k = 3 has no spurious minimum)
    arrays = np.load(folder / "cells" / "relu-k3-n3.npz")
    assert cell["converged"] == 1.0 and (arrays["status"] == 1).all()
    # the spurious rate is the end losses counted against the threshold, not the code's own summary
    assert cell["spurious_rate"] == pytest.approx(np.mean(arrays["final_F"] >= 1e-3))
    # the families' F: independent check with the population loss of the stored end points (F = L / 2)
    t = es.Teacher(b=jnp.ones(3), w=jnp.eye(3))
    L = es.population_loss("relu", t, es.Student(a=jnp.asarray(arrays["final_a"]),
                                                 theta=jnp.asarray(arrays["final_theta"])))
    np.testing.assert_allclose(np.asarray(L) / 2, arrays["final_F"], atol=1e-12)
    glob = [f for f in fams if f["kind"] == "global minimum"]
    assert glob and glob[0]["recovered"] == 3 and abs(glob[0]["F"]) < 1e-12
    assert "| relu-k3-n3 | 12 |" in proc.stdout
    # the loss curves have points up to each seed's last step, on a GD-step axis
    last = np.nanmax(arrays["curve_steps"], axis=1)
    assert np.array_equal(last, arrays["steps"]) and (np.sum(np.isfinite(arrays["curve_F"]), 1) >= 5).all()


def test_census_resume_computes_nothing_and_results_shows_it(census_run):
    folder, proc = census_run
    before = (folder / "cells" / "relu-k3-n3.parquet").stat().st_mtime_ns
    again = _run("census", "--resume", str(folder), "--json", cwd=folder)
    assert (folder / "cells" / "relu-k3-n3.parquet").stat().st_mtime_ns == before
    assert json.loads(again.stdout) == json.loads((folder / "census.json").read_text())
    shown = _run("results", str(folder), cwd=folder).stdout
    assert "| relu-k3-n3 | 12 |" in shown and "### relu-k3-n3" in shown
    log = (folder / "run.log").read_text()
    assert log.count("done") == 1  # the cell was computed once


def test_census_refuses_bad_input(tmp_path):
    bad = _run("census", "no-such-preset", "--out", str(tmp_path), cwd=tmp_path, ok=False)
    assert bad.returncode != 0 and "safran-shamir" in bad.stderr
    bad = _run("census", "safran-shamir", "--k", "6-8", "--out", str(tmp_path), cwd=tmp_path, ok=False)
    assert bad.returncode != 0 and "6..8" in bad.stderr
    (tmp_path / "c.toml").write_text('activations = ["relu"]\nk = [3]\nseedz = 3\n')
    bad = _run("census", str(tmp_path / "c.toml"), "--out", str(tmp_path), cwd=tmp_path, ok=False)
    assert bad.returncode != 0 and "seedz: unknown key" in bad.stderr


def test_preset_is_safran_and_shamirs_protocol():
    cfg = preset("safran-shamir")
    assert cfg.k == list(range(6, 21)) and cfg.extra_units == [0, 1] and cfg.seeds == 1000
    assert (cfg.lr, cfg.gtol, cfg.spurious, cfg.train) == (0.1, 1.6e-10, 1e-3, "theta")
    with pytest.raises(ValueError, match="valid: safran-shamir"):
        preset("nope")
    # per-activation potential options: the preset's follow its activations; unknown ones are refused
    cfg = preset("paper-activations", potential_options={"tanh": {"order": 48}})
    assert cfg.potential_options == {"tanh": {"order": 48}}
    assert cell_problem(cfg, Cell("tanh", 3, 3))[0].pot == es.potential("tanh", order=48)
    with pytest.raises(ValueError, match="not among the activations"):
        preset("paper-activations", activations=["erf"], potential_options={"tanh": {"method": "fast"}})
    with pytest.raises(ValueError, match="valid: method, order"):
        preset("safran-shamir", potential_options={"relu": {"nodes": 3}})


def test_unit_gtol_stops_on_the_largest_unit_gradient(getkey):
    t = es.Teacher(b=jnp.ones(3), w=jnp.eye(3))
    s = es.Student(a=jnp.ones((4, 3)), theta=jax.random.normal(getkey(), (4, 3, 3)) / math.sqrt(3))
    p = es.Problem("relu", t, train="theta")
    tr = es.gradient_descent(p, s, lr=0.05, max_steps=20000, gtol=1e-7, gtol_norm="unit")
    g = p.grad(tr.final).theta
    unit = np.sqrt(np.asarray(jnp.sum(g * g, -1))).max(-1)
    assert (np.asarray(tr.status) == 1).all() and (unit < 1e-7).all()
    # the full norm is larger than the largest unit's, so the same tolerance on it needs at least as many steps
    full = es.gradient_descent(p, s, lr=0.05, max_steps=20000, gtol=1e-7)
    assert (np.asarray(full.n_steps) >= np.asarray(tr.n_steps)).all()
    with pytest.raises(ValueError, match="valid: full, unit"):
        es.gradient_descent(p, s, lr=0.05, max_steps=10, gtol_norm="max")


def test_relu_closed_form_gradient_matches_autodiff(getkey):
    t = es.random_teacher(getkey(), d=4, k=3)
    for obj in ("L", "G", "reduced"):
        s = es.random_student(getkey(), d=4, k=5)
        s = es.Student(a=s.a, theta=s.theta.at[0].set(0.0))  # a zero unit too
        fast = es.Problem("relu", t, objective=obj)
        auto = es.Problem("relu", t, objective=obj, gradient="autodiff")
        x = fast.flatten(s)
        (v1, g1), (v2, g2) = fast.flat_value_and_grad(x), auto.flat_value_and_grad(x)
        assert fast.closed_form and abs(float(v1 - v2)) < 1e-12
        np.testing.assert_allclose(g1, g2, atol=1e-12)
        # and against a central finite difference of the loss itself
        e = jnp.zeros_like(x).at[13].set(1e-6)  # a coordinate of unit 2 (unit 0 sits at the kink)
        fd = (fast.f(x + e) - fast.f(x - e)) / 2e-6
        assert abs(float(fd - g1[13])) < 1e-7


def test_descend_rounds_equal_one_long_run(getkey):
    t = es.Teacher(b=jnp.ones(3), w=jnp.eye(3))
    s = es.Student(a=jnp.ones((5, 3)), theta=jax.random.normal(getkey(), (5, 3, 3)) / math.sqrt(3))
    p = es.Problem("relu", t, train="theta")
    rounds = descend(p, s, lr=0.05, gtol=1e-8, max_steps=4000, round_steps=300, chunk=2)
    one = es.gradient_descent(p, s, lr=0.05, max_steps=4000, gtol=1e-8, gtol_norm="unit")
    np.testing.assert_array_equal(rounds.steps, np.asarray(one.n_steps))
    np.testing.assert_allclose(np.asarray(rounds.final.theta), np.asarray(one.final.theta), atol=1e-13)
    assert rounds.seed_steps <= 2 * 3 * 4000  # chunks of 2: never more than the padded seeds times the budget
    # a batch of 64 shrinks to 4 once at most 4 seeds run: the same end points for less padded work
    small = descend(p, s, lr=0.05, gtol=1e-8, max_steps=4000, round_steps=300, chunk=64)
    np.testing.assert_array_equal(small.steps, rounds.steps)
    np.testing.assert_allclose(np.asarray(small.final.theta), np.asarray(one.final.theta), atol=1e-13)
    assert small.seed_steps < 64 * small.steps.max()  # without it: 64 times the slowest seed's steps

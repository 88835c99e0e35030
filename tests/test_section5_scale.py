"""Section 5 at scale: packed widths (one zero-padded program per depth) against one program per cell, their
checkpoints, and the cost model of ``earnshaw reproduce --estimate`` against a measured cell."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from earnshaw.cli import app
from earnshaw.experiments import section5 as s5
from earnshaw.experiments.section5.cells import pad_width, run_depth_packed
from earnshaw.experiments.section5.deep import init_deep, make_train_chunk
from earnshaw.experiments.section5.estimate import estimate, makespan

SMALL = s5.Section5Config("small", depths=(2, 3), widths=(3, 7), seeds=2, n_train=200, n_test=200, lr=5e-4,
                          steps=60, chunk=20, packed=True)


class _Stop(KeyboardInterrupt):
    pass


def test_padded_units_stay_zero_and_the_real_ones_train_as_unpadded():
    """The exactness argument: with s(0) = 0 a zero-padded unit is silent, gets zero gradient and stays zero."""
    keys = jax.random.split(jax.random.key(3), 2)
    params = jax.vmap(lambda k: init_deep(k, 4, 3, 3))(keys)
    x = jax.random.normal(jax.random.key(4), (2, 64, 4))
    y = jnp.tanh(x[..., 0])
    padded = pad_width(params, 8)
    assert [p.shape for p in padded] == [(2, 8, 4), (2, 8, 8), (2, 1, 8)]
    chunk = make_train_chunk(25, 1e-2, "sigmoid_pm1", "sum")
    a, b = chunk(params, x, y, x, y), chunk(padded, x, y, x, y)
    pb = [np.asarray(w) for w in b.params]
    assert not np.any(pb[0][:, 3:]) and not np.any(pb[1][:, 3:]) and not np.any(pb[1][:, :, 3:])
    assert not np.any(pb[2][:, :, 3:])
    for wa, wb in zip(a.params, pb):
        np.testing.assert_allclose(wb[(slice(None),) + tuple(slice(0, n) for n in wa.shape[1:])], wa, rtol=2e-5,
                                   atol=1e-6)
    np.testing.assert_allclose(b.train_mse, a.train_mse, rtol=1e-5)


def test_packed_depth_gives_the_unpacked_cells_to_float32_rounding():
    depth = 3  # a hidden (width, width) matrix padded on both sides; depth 2 runs in the CLI test below
    packed = run_depth_packed(SMALL, depth)
    for width in SMALL.widths:
        alone = s5.run_cell(SMALL, depth, width)
        mine = packed[s5.cell_name(depth, width)]
        assert mine["width"] == width and mine["curve_steps"] == alone["curve_steps"]
        for key in ("curve_test_mse", "curve_train_mse", "dense_train_mse", "initial_test_mse"):
            np.testing.assert_allclose(mine[key], alone[key], rtol=3e-5, err_msg=key)
        # training happened: the curves move, so agreeing is not trivial
        assert alone["curve_train_mse"][0][-1] < 0.9 * alone["curve_train_mse"][0][0]


def test_packed_run_resumes_from_its_checkpoint_bit_for_bit(tmp_path):
    full = run_depth_packed(SMALL, 2)
    ck = tmp_path / "p.npz"
    seen = []

    def stop_after_two(ev):
        seen.append(ev)
        if len(seen) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_depth_packed(SMALL, 2, checkpoint=ck, checkpoint_every=0, progress=stop_after_two)
    rest = []
    res = run_depth_packed(SMALL, 2, checkpoint=ck, progress=rest.append)
    assert [e["step"] for e in rest] == [60]  # only the third chunk ran
    for name in full:
        assert res[name]["curve_test_mse"] == full[name]["curve_test_mse"]
        assert res[name]["dense_train_mse"] == full[name]["dense_train_mse"]
    # a checkpoint of the packed task is refused by an unpacked cell
    with pytest.raises(ValueError, match="another cell"):
        s5.run_cell(SMALL, 2, 3, checkpoint=ck)


def test_packing_refuses_an_activation_that_is_not_zero_at_zero():
    with pytest.raises(ValueError, match=r"s\(0\) = 0.5"):
        SMALL.replace(activation="normal_cdf")
    assert SMALL.replace(activation="tanh").packed


def test_cli_reproduce_packed_commits_every_cell_and_resumes_nothing(tmp_path):
    runner = CliRunner()
    args = ["reproduce", "figure1", "--preset", "ci", "--widths", "3,7", "--n-train", "200", "--n-test", "200",
            "--lr", "5e-4", "--steps", "60", "--chunk", "20", "--packed", "--json", "--quiet", "--out", str(tmp_path)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [r["width"] for r in out["rows"]] == [3, 7]
    plain = runner.invoke(app, [a for a in args if a != "--packed"] + ["--out", str(tmp_path / "plain")])
    for a, b in zip(out["rows"], json.loads(plain.stdout)["rows"]):
        assert a["test_mse_mean"] == pytest.approx(b["test_mse_mean"], rel=1e-4)
    again = runner.invoke(app, ["reproduce", "figure1", "--resume", out["run_dir"], "--json", "--quiet"])
    assert again.exit_code == 0 and json.loads(again.stdout)["rows"] == out["rows"]
    log = (tmp_path.glob("figure1-*/run.log").__next__()).read_text()
    assert log.count(" done ") == 2  # the two cells, committed once each, nothing recomputed


def test_makespan_is_longest_first_and_bounded_below():
    assert makespan([1.0] * 8, 4) == 2.0
    assert makespan([10.0, 1.0, 1.0], 3) == 10.0
    with pytest.raises(ValueError):
        makespan([1.0], 0)


def test_estimate_predicts_a_measured_cell(tmp_path):
    """The cost model's seconds per step against a real run of the same cell (generous: a shared 2-core machine)."""
    cfg = SMALL.replace(packed=False, depths=(2,), widths=(7,), steps=20000, chunk=10000)
    [cost] = estimate(cfg, probe=10000)  # compiles the run's own chunk
    assert cost.name == "d2_w7" and cost.steps == 20000
    measured = s5.run_cell(cfg, 2, 7)["train_seconds_this_session"]  # 20000 steps, compiled
    predicted = cost.seconds - cost.setup_seconds
    assert measured / 3 < predicted < 3 * measured, (predicted, measured)
    res = CliRunner().invoke(app, ["reproduce", "table2", "--preset", "ci", "--depths", "2", "--widths", "3,7",
                                   "--n-train", "200", "--n-test", "200", "--lr", "5e-4", "--estimate", "--probe",
                                   "20", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    est = json.loads(res.stdout)
    assert [t["name"] for t in est["tasks"]] == ["d2_w3", "d2_w7"]
    assert est["seconds_on_workers"]["2"] == pytest.approx(max(t["seconds"] for t in est["tasks"]))
    assert est["seconds_total"] == pytest.approx(sum(t["seconds"] for t in est["tasks"]))

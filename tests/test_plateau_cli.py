"""``earnshaw plateau`` end to end on a tiny override of a preset: tables, figures, resume, bad input."""
import json
import math

import pytest
from typer.testing import CliRunner

from earnshaw.cli import app
from earnshaw.experiments.plateau import symmetric_height

TINY = ["--set", "sizes=[[2,2]]", "--set", "d=[300]", "--set", "t1=400", "--set", "n_save=80", "--set",
        "sim_seeds=4", "--set", "sim_t1=30", "--set", "sim_saves=11", "--set", "lr=[0.5]"]


def test_plateau_command_runs_resumes_and_reports_the_fixed_point(tmp_path):
    out = tmp_path / "runs"
    res = CliRunner().invoke(app, ["plateau", "saad-solla", *TINY, "--out", str(out), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    (row,) = data["rows"]
    assert data["computed"] == ["K2-M2-d300-lr0.5"]
    # the fixed point Newton found from the ODE's plateau, against the one-parameter minimisation
    assert row["fixed_point_height"] == pytest.approx(symmetric_height(2, tau=0.5), abs=1e-9)
    assert row["index"] == 1 and row["lambda_min"] < 0 and row["newton_grad_norm"] < 1e-9
    assert row["unit_spread"] < 1e-4
    # the ODE's plateau at lr = 0.5 lies above the fixed point; the student escapes it and learns the teacher
    assert row["fixed_point_height"] < row["ode_plateau_height"] < 0.05
    assert 0 < row["t_enter"] < row["t_plateau"] < row["t_escape"] < 400 and row["final_eps"] < 1e-6
    assert row["sim_seeds"] == 4 and math.isfinite(row["sim_max_gap_in_sem"])
    run_dir = data["run_dir"]
    for name in ("plateau.md", "plateau.json", "results.parquet", "figures/eps_g.png", "config.toml"):
        assert (tmp_path / "runs" / run_dir.split("/")[-1] / name).exists(), name
    table = (out / run_dir.split("/")[-1] / "plateau.md").read_text()
    assert "| 2 | 2 | 300 | 0.5 | 0.011611 |" in table

    again = CliRunner().invoke(app, ["plateau", "--resume", run_dir, "--json", "--quiet"])
    assert again.exit_code == 0, again.output
    resumed = json.loads(again.output)
    assert resumed["computed"] == [] and resumed["skipped"] == ["K2-M2-d300-lr0.5"]
    assert resumed["rows"][0]["fixed_point_height"] == row["fixed_point_height"]

    shown = CliRunner().invoke(app, ["results", run_dir])
    assert shown.exit_code == 0 and "0.011611" in shown.output


def test_plateau_command_refuses_bad_input(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["plateau", "no-such-preset"])
    assert bad.exit_code == 2 and "saad-solla" in bad.output
    unknown = runner.invoke(app, ["plateau", "length", "--set", "colour=red", "--out", str(tmp_path)])
    assert unknown.exit_code == 2 and "colour: unknown key" in unknown.output
    sim = runner.invoke(app, ["plateau", "length", "--set", "sim_seeds=2", "--out", str(tmp_path)])
    assert sim.exit_code == 2 and "must then be an integer" in sim.output
    act = runner.invoke(app, ["plateau", "--set", "activation=gaussian", "--out", str(tmp_path)])
    assert act.exit_code == 2 and "activation" in act.output
    assert not list(tmp_path.iterdir())  # nothing was created for a refused config

"""The experiment runtime and run folders (earnshaw.runtime, earnshaw.store.RunFolder), and the config and CLI
findings of a new user: explicit teachers, fixed output weights, paired starts, teacher.scale, validation
before a run folder exists, help text, plain progress lines."""
import io
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from earnshaw import runtime
from earnshaw.cli import app
from earnshaw.experiments.config import ConfigError, load_config, parse_config
from earnshaw.experiments.sweep import build_teacher, cell_keys, cells_of, run_cell
from earnshaw.network import random_teacher
from earnshaw.store import RunFolder, RunFolderError

EARNSHAW = [sys.executable, "-c", "from earnshaw.cli import main; main()"]
BASE = dict(activation="erf", seeds=4, teacher=dict(d=3, k=2))


# --- run folders and the runtime ------------------------------------------------------------------------------

def _square(x, progress=None):
    if progress is not None:
        progress({"event": "inside", "x": x})
    return x * x


def test_run_cells_commits_skips_and_logs(tmp_path):
    run = RunFolder.create(tmp_path, "t", command="sweep", config=dict(n=3))
    tasks = [runtime.Task(id=f"c{i}", fn=_square, args=(i,), label=f"x={i}", index=i) for i in range(3)]
    commit = lambda task, r: run.commit(task.id, [dict(cell=task.id, cell_index=task.index, seed=0, y=r)])  # noqa
    events = []
    out = runtime.run_cells(run, tasks[:2], commit, progress=events.append)
    assert out["computed"] == ["c0", "c1"] and out["skipped"] == []
    assert [e["event"] for e in events] == ["start", "inside", "cell", "inside", "cell"]
    again = RunFolder.open(run.path, command="sweep")
    out = runtime.run_cells(again, tasks, commit)
    assert out["computed"] == ["c2"] and out["skipped"] == ["c0", "c1"]
    assert [r["y"] for r in again.rows()] == [0, 1, 4]
    assert [line[2:4] for line in again.log_lines()] == [["done", "c0"], ["done", "c1"], ["done", "c2"]]
    assert len(again.meta["sessions"]) == 2 and again.meta["sessions"][1]["cells_skipped"] == 2
    assert again.meta["environment"]["x64"] is True and again.meta["schema"] == 2


def test_run_folder_refuses_another_command_or_config(tmp_path):
    run = RunFolder.create(tmp_path, "t", command="verify", config=dict(quick=True))
    with pytest.raises(RunFolderError, match="earnshaw verify`, not of `earnshaw demo"):
        RunFolder.open(run.path, command="demo")
    with pytest.raises(RunFolderError, match="different config"):
        RunFolder.at(run.path, "t", command="verify", config=dict(quick=False))
    with pytest.raises(FileNotFoundError):
        RunFolder.open(tmp_path / "nope")


def test_local_worker_processes_give_the_in_process_results(tmp_path):
    tasks = [runtime.Task(id=f"c{i}", fn=_square, args=(i,)) for i in range(3)]
    events = []
    got = dict((t.id, r) for t, r in runtime.run_tasks(tasks, workers=2, progress=events.append))
    assert got == {"c0": 0, "c1": 1, "c2": 4}
    assert sorted(e["x"] for e in events) == [0, 1, 2]  # in-cell progress came back from the workers


def test_backend_errors_are_named():
    with pytest.raises(ValueError, match="unknown backend 'dask'; valid: local, ray"):
        runtime.check_backend("dask")
    with pytest.raises(ValueError, match="--address is for --backend ray"):
        runtime.check_backend("local", "127.0.0.1:1")


def test_reporter_prints_plain_lines_when_not_a_terminal():
    buf = io.StringIO()
    with runtime.Reporter("sweep", unit="cells", file=buf, terminal=False, every=1e9) as rep:
        rep.start(total=4, done=1)
        rep.update(done=2, description="teacher.k=3", force=True)
        rep.update(done=3)  # not forced, not due: no line
        rep.update(done=4)  # the last one always prints
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[sweep] 1/4 cells 25%")
    assert lines[1].startswith("[sweep] 2/4 cells 50%") and lines[1].endswith(": teacher.k=3") and "left" in lines[1]
    assert lines[2].startswith("[sweep] 4/4 cells 100%") and len(lines) == 3


# --- configs: explicit teachers, fixed output weights, paired starts, teacher.scale ------------------------------

SAFRAN_SHAMIR = textwrap.dedent("""
    name = "safran-shamir"
    activation = "relu"
    seeds = 4
    save_paths = 1
    [teacher]
    d = 3
    k = 2
    w = "identity"
    [student]
    a = 1.0
    [algorithm]
    name = "gradient_descent"
    options = { lr = 0.05, max_steps = 200, train = "theta" }
""")


def test_identity_teacher_and_fixed_output_weights_from_the_cli(tmp_path):
    """Safran and Shamir's setting: w_j = e_j, every output weight 1 and kept at 1, ReLU."""
    cfg = tmp_path / "ss.toml"
    cfg.write_text(SAFRAN_SHAMIR)
    res = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "runs"), "--no-figures", "--quiet"])
    assert res.exit_code == 0, res.output
    (folder,) = list((tmp_path / "runs").iterdir())
    run = RunFolder.open(folder)
    (cell,) = run.committed()
    arr = run.cell_arrays(cell)
    np.testing.assert_array_equal(arr["teacher_w"], np.eye(3)[:2])
    np.testing.assert_array_equal(arr["teacher_b"], [1.0, 1.0])
    np.testing.assert_array_equal(arr["final_a"], np.ones((4, 2)))  # trained theta only: a stayed at 1
    assert not np.allclose(arr["final_theta"], arr["path_theta"][0, 0])  # while theta moved


def test_teacher_from_a_file_relative_to_the_config(tmp_path):
    w = np.array([[1.0, 0.5, 0.0], [0.0, -1.0, 2.0]])
    np.savez(tmp_path / "teacher.npz", w=w, b=np.array([0.5, -1.5]))
    (tmp_path / "c.toml").write_text(SAFRAN_SHAMIR.replace('w = "identity"', 'w = "teacher.npz"'))
    cfg = load_config(tmp_path / "c.toml")
    teacher = build_teacher(cfg, jax.random.key(0))
    np.testing.assert_array_equal(teacher.w, w)
    np.testing.assert_array_equal(teacher.b, [0.5, -1.5])
    np.save(tmp_path / "w.npy", w[:1])
    (tmp_path / "bad.toml").write_text(SAFRAN_SHAMIR.replace('w = "identity"', 'w = "w.npy"'))
    with pytest.raises(ConfigError, match=r"teacher.w: .*w.npy holds w of shape \(1, 3\), but the config says k=2"):
        load_config(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match="teacher.w: teacher file .* does not exist"):
        parse_config(dict(BASE, teacher=dict(d=3, k=2, w="nope.npz")))
    with pytest.raises(ConfigError, match="identity needs k <= d"):
        parse_config(dict(BASE, teacher=dict(d=2, k=3, w="identity")))


def test_teacher_scale_means_what_random_teacher_scale_means():
    for scale, expect in ((2.0, 2.0), (None, 1 / np.sqrt(3))):
        teacher = dict(d=3, k=2) if scale is None else dict(d=3, k=2, scale=scale)
        cfg = parse_config(dict(BASE, teacher=teacher))
        got = build_teacher(cfg, jax.random.key(7))
        want = random_teacher(jax.random.key(7), 3, 2, scale=expect)
        np.testing.assert_allclose(got.w, want.w, rtol=1e-15)


def test_paired_starts_across_activations():
    grid = {"activation": ["erf", "relu"]}
    unpaired = [cell_keys(c.config)[1] for c in cells_of(parse_config(dict(BASE, grid=grid)))]
    paired = [cell_keys(c.config)[1] for c in cells_of(parse_config(dict(BASE, grid=grid,
                                                                          student=dict(paired=True))))]
    same = lambda a, b: bool(np.all(jax.random.key_data(a) == jax.random.key_data(b)))  # noqa: E731
    assert same(*paired) and not same(*unpaired)
    # and the two paired cells really start from the same students
    cfgs = [c.config for c in cells_of(parse_config(dict(BASE, grid=grid, student=dict(paired=True), save_paths=4,
                                                          algorithm=dict(name="gradient_descent",
                                                                         options=dict(lr=0.1, max_steps=3)))))]
    starts = [run_cell(c)["arrays"]["path_theta"][:, 0] for c in cfgs]
    np.testing.assert_array_equal(*starts)


# --- validation before the run folder, help text ----------------------------------------------------------------

def test_misspelt_solver_is_refused_before_a_run_folder_exists(tmp_path):
    proc = subprocess.run([*EARNSHAW, "demo", "--solver", "kvaerno33", "--seeds", "2", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "unknown solver 'kvaerno33'" in proc.stderr and "kvaerno3" in proc.stderr
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="algorithm.options.solver: unknown solver 'tsit55'.*tsit5"):
        parse_config(dict(BASE, algorithm=dict(name="gradient_flow", options=dict(solver="tsit55"))))
    with pytest.raises(ConfigError, match="algorithm.options.train: unknown train 'weights'"):
        parse_config(dict(BASE, algorithm=dict(name="gradient_descent", options=dict(train="weights"))))
    bad = tmp_path / "bad.toml"
    bad.write_text(SAFRAN_SHAMIR.replace('w = "identity"', 'w = "missing.npz"'))
    proc = subprocess.run([*EARNSHAW, "run", str(bad), "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode != 0 and "teacher.w" in proc.stderr and not (tmp_path / "r").exists()


def test_help_text_keeps_bracketed_words():
    runner = CliRunner()
    assert "(no [grid])" in " ".join(runner.invoke(app, ["run", "--help"]).output.split())
    assert "with a [grid]" in " ".join(runner.invoke(app, ["sweep", "--help"]).output.split())


def test_every_command_config_refuses_unknown_keys_by_name(tmp_path):
    from pydantic import ValidationError

    from earnshaw.experiments.demo import DemoConfig
    from earnshaw.experiments.section5 import PRESETS, ReproduceConfig, Section5Config
    from earnshaw.experiments.verify import VerifyConfig

    for model, data, key in ((DemoConfig, dict(sedds=3), "sedds"), (VerifyConfig, dict(quick=True, onyl=["x"]), "onyl"),
                             (Section5Config, dict(PRESETS["table2"]["ci"].to_dict(), stesp=3), "stesp"),
                             (ReproduceConfig, dict(target="table2", config=dict(PRESETS["table2"]["ci"].to_dict(),
                                                                                 lrr=1.0)), "config.lrr")):
        with pytest.raises(ValidationError) as info:
            model.model_validate(data)
        err = info.value.errors()[0]
        assert err["type"] == "extra_forbidden" and ".".join(map(str, err["loc"])) == key
    assert parse_config.__module__ == "earnshaw.experiments.config"  # sweep/run: ConfigError names the key too
    with pytest.raises(ConfigError, match=r"^seedz: unknown key"):
        parse_config(dict(BASE, seedz=3))
    # a resumed folder whose config.toml was edited by hand: the CLI names the key
    run = RunFolder.create(tmp_path, "demo", command="demo", config=DemoConfig(seeds=2))
    (run.path / "config.toml").write_text((run.path / "config.toml").read_text() + "sedds = 3\n")
    res = CliRunner().invoke(app, ["demo", "--resume", str(run.path)])
    assert res.exit_code != 0 and "sedds: unknown key" in res.output


def test_nothing_under_experiments_imports_the_cli():
    root = pathlib.Path(__file__).parents[1] / "src" / "earnshaw"
    offenders = [str(p.relative_to(root)) for p in (root / "experiments").rglob("*.py")
                 if "_cli" in p.read_text()]
    assert not offenders
    for name in ("store.py", "runtime.py"):
        assert "_cli" not in (root / name).read_text()

"""``earnshaw demo`` end to end (a small configuration), and ``earnshaw results`` on every kind of run folder."""
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

EARNSHAW = [sys.executable, "-c", "from earnshaw.cli import main; main()"]
VERDICTS = ("global minimum", "spurious local minimum", "saddle", "not converged", "escaping")


def _run(*args, cwd):
    proc = subprocess.run([*EARNSHAW, *args], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    text = _run("demo", "--d", "3", "--k", "2", "--seeds", "12", "--t1", "1e4", "--quiet", "--out", str(out),
                cwd=out)
    return next(out.glob("demo-*")), text


def test_demo_writes_the_run_folder_and_prints_its_table(demo_run):
    folder, text = demo_run
    for name in ("results.parquet", "meta.json", "config.toml"):
        assert (folder / name).is_file(), name
    figures = sorted(p.name for p in (folder / "figures").glob("*.png"))
    assert figures == ["distances.png", "loss_curves.png", "trajectories.png"]
    rows = pq.read_table(folder / "results.parquet").to_pylist()
    assert len(rows) == 12 and {r["verdict"] for r in rows} <= set(VERDICTS)
    meta = json.loads((folder / "meta.json").read_text())
    fr = meta["summary"]["fractions"]
    assert sum(fr[v] for v in VERDICTS) == pytest.approx(1.0)
    # the fractions are the rows' verdicts counted, and the printed table says the same
    for v in VERDICTS:
        assert fr[v] == pytest.approx(sum(r["verdict"] == v for r in rows) / 12)
    assert f"│ global minimum         │    {fr['global minimum']:.3f} │" in text
    assert meta["config"]["seeds"] == 12 and meta["environment"]["x64"] is True


def test_results_prints_a_demo_folder_as_the_demo_did(demo_run):
    folder, text = demo_run
    shown = _run("results", str(folder), cwd=folder)
    table = text[:text.index("flow ")]  # the tables, without the timings line
    assert table in shown
    summary = json.loads(_run("results", str(folder), "--json", cwd=folder))
    assert summary == json.loads((folder / "meta.json").read_text())["summary"]


def test_results_prints_verify_and_reproduce_folders(tmp_path):
    _run("verify", "--quick", "--only", "lemma31", "--out", str(tmp_path), "--json", cwd=tmp_path)
    shown = _run("results", str(next(tmp_path.glob("verify-*"))), cwd=tmp_path)
    assert "Lemma 31" in shown and "1/1 claims pass" in shown
    _run("reproduce", "figure1", "--preset", "ci", "--widths", "10,5", "--steps", "100", "--chunk", "50",
         "--n-train", "100", "--n-test", "100", "--quiet", "--out", str(tmp_path), cwd=tmp_path)
    run = next(tmp_path.glob("figure1-*"))
    rows = json.loads(_run("results", str(run), "--json", cwd=tmp_path))["rows"]
    assert [r["width"] for r in rows] == [5, 10] and all(isinstance(r["test_mse_mean"], float) for r in rows)
    shown = _run("results", str(run), cwd=tmp_path)
    assert shown.index("│     5 │") < shown.index("│    10 │")


def test_results_rejects_a_folder_that_is_no_run(tmp_path):
    proc = subprocess.run([*EARNSHAW, "results", str(tmp_path / "nope")], capture_output=True, text=True)
    assert proc.returncode != 0 and "no such run folder" in " ".join(proc.stderr.split())  # rich wraps lines
    proc = subprocess.run([*EARNSHAW, "results", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0 and "not a run folder" in " ".join(proc.stderr.split())


def test_results_names_a_broken_run_folder(tmp_path):
    (tmp_path / "meta.json").write_text('{"schema": 2, "command": "demo"}')  # no summary
    proc = subprocess.run([*EARNSHAW, "results", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0 and "unreadable run folder" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr


def test_cli_keeps_compiled_programs_in_its_cache_folder_unless_turned_off(tmp_path):
    """The CLI turns on JAX's persistent compilation cache under ``$XDG_CACHE_HOME/earnshaw/jax``; a second
    run finds the first one's programs there (with ``JAX_LOG_COMPILES`` JAX reports each hit);
    ``EARNSHAW_COMPILATION_CACHE=0`` leaves the folder untouched."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    on = dict(env, XDG_CACHE_HOME=str(tmp_path / "on"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_LOG_COMPILES="1")
    off = dict(env, XDG_CACHE_HOME=str(tmp_path / "off"), EARNSHAW_COMPILATION_CACHE="0")
    args = [*EARNSHAW, "potential", "tanh", "--dim", "4"]
    # an entry without its access-time file, as a process without filelock (another environment) writes them:
    # with the size cap on, JAX would fail every later write ("Error writing persistent compilation cache entry")
    planted = tmp_path / "on" / "earnshaw" / "jax" / "jit_elsewhere-0123-cache"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"compiled elsewhere")
    first = subprocess.run(args, capture_output=True, text=True, env=on, cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Error writing persistent compilation cache" not in first.stderr, first.stderr[-3000:]
    assert planted.with_name("jit_elsewhere-0123-atime").exists()
    kept = [p for p in (tmp_path / "on" / "earnshaw" / "jax").glob("*-cache") if p != planted]
    assert kept, sorted(p.name for p in (tmp_path / "on").rglob("*"))
    again = subprocess.run(args, capture_output=True, text=True, env=on, cwd=tmp_path, timeout=300)
    assert again.returncode == 0 and again.stdout == first.stdout
    hits = [run.stderr.count("Persistent compilation cache hit") for run in (first, again)]
    assert hits[1] >= 10 and hits[1] > hits[0], hits
    skipped = subprocess.run(args, capture_output=True, text=True, env=off, cwd=tmp_path, timeout=300)
    assert skipped.returncode == 0 and skipped.stdout == first.stdout
    assert not (tmp_path / "off").exists()

"""The ray backend on a real Ray cluster on this machine: a head and a second node, both started with
``ray start`` and bound to loopback; a sweep on it equals the local backend's, and killing the second node
while it computes a cell loses no finished cell and recomputes none.

Ray is a test dependency (requirements.lock): this test is not skipped when Ray is missing, it fails.
"""
import json
import math
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

from earnshaw import store
from earnshaw.experiments.config import load_config
from earnshaw.experiments.sweep import TIME_COLUMNS, run_sweep

pytestmark = pytest.mark.ray

RAY = str(pathlib.Path(sys.executable).with_name("ray"))
EARNSHAW = [sys.executable, "-c", "from earnshaw.cli import main; main()"]

# cells of about half a second once compiled (about ten seconds on a worker's first cell), so that a cell is
# committed while the second node still computes one: the window in which the test kills that node
CONFIG = textwrap.dedent("""
    name = "raytiny"
    activation = "erf"
    seeds = 512
    save_paths = 2
    [teacher]
    d = 3
    k = 2
    [algorithm]
    name = "gradient_descent"
    options = { lr = 0.5, max_steps = 4000 }
    [grid]
    student.init_scale = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0]
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args, env, log):
    """``ray start ARGS`` in a new session: the node's processes (its raylet's process group, and the workers,
    which the raylet puts in process groups of their own) stay in that session, so the node can be killed whole.
    Returns the session id."""
    proc = subprocess.Popen([RAY, "start", *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    assert proc.wait(timeout=120) == 0, pathlib.Path(log.name).read_text()[-3000:]
    return proc.pid  # the session (and the raylet's process group) of the node


def _session(sid: int) -> list:
    """``(pid, command line)`` of the live processes in session ``sid``."""
    out = []
    for d in pathlib.Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[3]) == sid:
                out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
        except (OSError, ValueError, IndexError):
            continue
    return out


def _kill_node(sid: int):
    """SIGKILL the node started as session ``sid``: its raylet's process group and every worker."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid, _ in _session(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head (1 CPU) and one more node (1 CPU) on 127.0.0.1; stopped (every process) at the end."""
    # a short private temp dir: Ray's Unix socket paths under it must stay under 108 bytes
    temp = tempfile.mkdtemp(prefix="esray", dir="/tmp")
    log = open(tmp_path_factory.mktemp("raylog") / "ray.log", "w")
    port = _free_port()
    # notice a dead node within seconds (default: about half a minute), so its tasks are retried soon; a
    # token of this cluster's own for the nodes and the driver (a token file left in ~/.ray by another Ray
    # made the head demand one that "disabled" clients do not send)
    env = dict(os.environ, RAY_health_check_period_ms="1000", RAY_health_check_failure_threshold="3",
               RAY_health_check_initial_delay_ms="1000", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
               RAY_AUTH_TOKEN=secrets.token_hex(32))
    groups = []
    try:
        groups.append(_ray_start(["--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                                  "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"],
                                 env, log))
        groups.append(_ray_start([f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                                  "--disable-usage-stats"], env, log))
        yield {"address": f"127.0.0.1:{port}", "head": groups[0], "worker": groups[1], "env": env}
    finally:
        for sid in groups:
            _kill_node(sid)
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _comparable(rows):
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()
             if k not in TIME_COLUMNS} for r in sorted(rows, key=lambda r: (r["cell"], r["seed"]))]


def _done(run: pathlib.Path) -> list:
    return [line.split()[3] for line in (run / "run.log").read_text().splitlines() if line.split()[2] == "done"]


def test_ray_cluster_runs_verify_as_the_local_backend_does(cluster, tmp_path):
    """Another command on the same runtime: verify's checks as Ray tasks give the local rows."""
    def rows(*extra):
        out = subprocess.run([*EARNSHAW, "verify", "--quick", "--only", "lemma31", "--seeds", "10", "--json",
                              "--out", str(tmp_path), *extra], cwd=tmp_path, env=cluster["env"], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in json.loads(out.stdout)]

    on_ray = rows("--backend", "ray", "--address", cluster["address"])
    assert on_ray == rows() and on_ray[0]["verdict"] == "PASS"


def test_ray_cluster_sweep_equals_local_and_survives_a_dead_node(cluster, tmp_path):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(CONFIG)
    run = tmp_path / "ray"
    args = ["sweep", str(cfg_path), "--resume", str(run), "--backend", "ray", "--address", cluster["address"],
            "--no-figures", "--json"]
    proc = subprocess.Popen([*EARNSHAW, *args], cwd=tmp_path, env=cluster["env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # wait until a cell is committed and the second node is computing one, then kill that node
    deadline = time.time() + 180
    busy = []
    while time.time() < deadline and proc.poll() is None:
        busy = [p for p, cmd in _session(cluster["worker"]) if cmd.startswith("ray::_ray_call")]
        if busy and (run / "run.log").exists() and _done(run):
            break
        time.sleep(0.05)
    assert proc.poll() is None and busy, "the sweep ended before the node could be killed mid-cell"
    before = {f.name: f.read_bytes() for f in (run / "cells").glob("*.parquet")}
    _kill_node(cluster["worker"])
    assert before
    out, err = proc.communicate(timeout=300)
    # the cell the dead node held was retried on the head: the sweep finishes
    assert proc.returncode == 0, err[-3000:]
    first = json.loads(out)
    assert len(first["cells"]) == 6 and not first["skipped"]

    # nothing finished was lost or rewritten, and no cell was computed twice
    for name, data in before.items():
        assert (run / "cells" / name).read_bytes() == data
    done = _done(run)
    assert sorted(done) == sorted(first["cells"]) and len(set(done)) == 6

    # resuming computes nothing
    again = subprocess.run([*EARNSHAW, "sweep", "--resume", str(run), "--backend", "ray", "--address",
                            cluster["address"], "--no-figures", "--json"], cwd=tmp_path, env=cluster["env"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = json.loads(again.stdout)
    assert resumed["computed"] == [] and sorted(resumed["skipped"]) == sorted(first["cells"])
    assert sorted(_done(run)) == sorted(done)

    # the same results as the local backend, row for row and array for array
    local = run_sweep(load_config(cfg_path), tmp_path / "local", figures=False)
    a = _comparable(store.read_parquet(run / "results.parquet"))
    b = _comparable(store.read_parquet(tmp_path / "local" / "results.parquet"))
    assert len(a) == 6 * 512 and a == b
    for cid in local["computed"]:
        with np.load(run / "cells" / f"{cid}.npz", allow_pickle=False) as x, \
                np.load(tmp_path / "local" / "cells" / f"{cid}.npz", allow_pickle=False) as y:
            assert x.files == y.files
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key])


def _wait(cond, what: str, timeout: float = 180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow  # about a minute on an idle 2-core machine (three Ray workers compile, plus the local run)
def test_ray_reproduce_survives_a_dead_driver_and_a_dead_node_resuming_cells_from_their_checkpoints(cluster, tmp_path):
    """Section 5 cells as Ray tasks, checkpointed every chunk into the run folder: the driver is killed mid-run and
    the run resumed; then the node computing a cell is killed and the cell continues on the head from its last
    chunk. Every cell equals the local backend's bit for bit."""
    from earnshaw.experiments import section5 as s5

    log = open(tmp_path / "node.log", "w")
    node = _ray_start([f"--address={cluster['address']}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
                       "--disable-usage-stats"], cluster["env"], log)
    try:
        opts = ["--preset", "ci", "--widths", "4,6", "--seeds", "2", "--n-train", "500", "--n-test", "100",
                "--steps", "60000", "--chunk", "500", "--checkpoint-every", "0", "--backend", "ray", "--address",
                cluster["address"], "--quiet", "--json"]
        out = tmp_path / "ray"
        first = subprocess.Popen([*EARNSHAW, "reproduce", "figure1", *opts, "--out", str(out)], cwd=tmp_path,
                                 env=cluster["env"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ckpts = lambda: list(out.glob("figure1-*/checkpoints/*.npz"))  # noqa: E731
        _wait(lambda: ckpts() or first.poll() is not None, "a cell to checkpoint")
        assert first.poll() is None, "the run ended before its driver could be killed"
        first.kill()  # the driver dies mid-run; its tasks die with it
        first.wait(timeout=60)
        run = next(out.glob("figure1-*"))
        assert not list(run.glob("cells/*.parquet"))

        started = time.time()
        second = subprocess.Popen([*EARNSHAW, "reproduce", "figure1", "--resume", str(run), *opts[-8:]],
                                  cwd=tmp_path, env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        fresh = lambda: [p for p in ckpts() if p.stat().st_mtime > started]  # noqa: E731
        busy = lambda: [n for n in (cluster["worker"], node)  # noqa: E731
                        if any(cmd.startswith("ray::_ray_call") for _, cmd in _session(n))]
        _wait(lambda: second.poll() is not None or (fresh() and busy()), "a worker node to compute a cell")
        assert second.poll() is None, "the resumed run ended before a node could be killed mid-cell"
        for n in busy():
            _kill_node(n)
        stdout, stderr = second.communicate(timeout=300)
        assert second.returncode == 0, stderr[-3000:]
        rows = json.loads(stdout)["rows"]
        assert [line.split()[2] for line in (run / "run.log").read_text().splitlines()].count("done") == 2
        # a cell continued from a checkpoint rather than restarting
        assert min(store.read_json(run / "cells" / f"d2_w{w}.json")["steps_this_session"] for w in (4, 6)) < 60000
        local = s5.reproduce("figure1", s5.load_run_config(run)[1], out=tmp_path / "local", figures=False)
        assert rows == local["rows"]
        for width in (4, 6):
            ray_rec = store.read_json(run / "cells" / f"d2_w{width}.json")
            assert ray_rec["curve_test_mse"] == local["cells"][f"d2_w{width}"]["curve_test_mse"]
    finally:
        _kill_node(node)
        log.close()

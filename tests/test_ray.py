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

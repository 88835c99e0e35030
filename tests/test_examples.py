"""Every script in examples/ runs and prints what it claims; every examples/*.toml validates.

The scripts run as a user runs them (a fresh interpreter, the working directory the repository), all at
once (one module fixture starts them), with ``EARNSHAW_QUICK=1``, which shrinks the tour (16 students
instead of 256, and the explicit solver tsit5, which compiles in a fraction of the implicit one's time).
The quickstart (the README's example, free of options) runs as written: 200 students, ~20 s.
"""
import ast
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import numpy as np
import pytest

from earnshaw.experiments.config import ConfigError, expand_grid, load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"


def _env():
    # compiled as a user's run is, fully optimised: the scripts spend more time running than compiling, and the
    # suite's unoptimised builds (conftest) ran the tour twice as long (37 s against 17 s alone)
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith(("--xla_backend_optimization_level", "--xla_llvm_disable_expensive_passes"))]
    return dict(os.environ, EARNSHAW_QUICK="1", XLA_FLAGS=" ".join(flags),
                PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _start(script):
    return subprocess.Popen([sys.executable, str(EXAMPLES / script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env())


def _finish(name, proc):
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, f"{name} failed:\n{err[-3000:]}"
    return out


@pytest.fixture(scope="module")
def started(request):
    """Every example script, started together: their compiles overlap on a multi-core machine."""
    wanted = {item.callspec.params["script"] for item in request.session.items
              if item.name.startswith("test_example_script_runs") and hasattr(item, "callspec")}
    procs = {script: _start(script) for script in sorted(SCRIPT_CHECKS) if script in wanted}
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _numbers(line):
    return [float(x) for x in re.findall(NUMBER, line)]


def _line(out, start):
    lines = [ln for ln in out.splitlines() if ln.startswith(start)]
    assert len(lines) == 1, f"expected one line starting {start!r} in:\n{out}"
    return lines[0]


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(SCRIPT_CHECKS)


def _check_tour(out):
    exact, mc, se = _numbers(_line(out, "Phi_erf(u, v) =").split("=", 1)[1])
    assert exact == pytest.approx(-0.1466078163, abs=1e-10)  # the closed form (tests/test_potentials.py)
    assert se > 0 and abs(mc - exact) < 4 * se
    assert _numbers(_line(out, "loss of the teacher itself:"))[0] == 0.0
    n, median = _numbers(_line(out, "losses of "))
    assert n == 16 and 0.0 < median < 10.0
    status = ast.literal_eval(_line(out, "flow status:").split(":", 1)[1])
    assert sum(status.values()) == 16 and set(status) <= {"converged", "limit_reached", "diverged", "collided"}
    assert _numbers(_line(out, "max gradient norm after Newton:"))[0] < 1e-3
    fractions = ast.literal_eval(_line(out, "{'global minimum'"))
    verdicts = ("global minimum", "spurious local minimum", "saddle", "not converged")
    assert sum(fractions[v] for v in verdicts) == pytest.approx(1.0, abs=2e-3)  # each rounded to 3 digits
    # most seeds recover the teacher in this well-posed case (k = 3 students for a k = 3 teacher, d = 4)
    assert fractions["recovered all units"] >= 0.5 and fractions["global minimum"] >= 0.5
    worst = _line(out, "worst seed")
    seed, loss = _numbers(worst)[:2]
    assert 0 <= seed < 16 and 0 <= loss < 1.0 and re.search(r"units recovered [0-3]/3", worst)
    residual, scale = _numbers(_line(out, "Theorem 5:").split("=", 1)[1])
    assert residual < 1e-10 * scale and scale > 0.1


def _check_heavy_tails(out):
    assert "bounded: True" in out and "lambda-harmonic for r >= 0.25" in out
    phi_quarter, phi_one = _numbers(_line(out, "Phi(0.25) ="))[1::2]
    assert 0.0 < phi_one < phi_quarter < 1.0  # the profile decreases from Phi(0) = 1
    # E[sigma^2] = Phi(0) = 1: near the origin the Monte Carlo estimates are close to it ...
    near = _numbers(_line(out, "|w| = 0.0:").split("estimates", 1)[1])
    assert len(near) == 5 and all(abs(e - 1.0) < 0.25 for e in near)
    # ... far from it the infinite fourth moment shows: the estimates scatter by an order of magnitude
    far = _numbers(_line(out, "|w| = 4.0:").split("estimates", 1)[1])
    assert len(far) == 5 and max(far) / min(far) > 10
    # the population loss is translation invariant (a radial potential): the same for both shifts
    rows = {}
    for shift in ("0.0", "2.5"):
        line = _line(out, f"teacher shifted by {shift}:")
        pop = _numbers(line.split("population loss", 1)[1].split(";")[0])[0]
        rows[shift] = pop, _numbers(line.split("seeds)", 1)[1])
    assert rows["0.0"][0] == pytest.approx(rows["2.5"][0], rel=1e-6) and rows["0.0"][0] > 0
    # unshifted, the sample losses scatter around it; shifted, most samples miss the mass and fall far below
    assert abs(np.median(rows["0.0"][1]) / rows["0.0"][0] - 1) < 0.2
    assert np.median(rows["2.5"][1]) < 0.1 * rows["2.5"][0]


def _check_quickstart(out):
    """The README's example: its printed fractions are a distribution and most of the 200 seeds find the teacher."""
    fractions = ast.literal_eval(_line(out, "{'global minimum'"))
    verdicts = ("global minimum", "spurious local minimum", "saddle", "not converged")
    assert sum(fractions[v] for v in verdicts) == pytest.approx(1.0, abs=2e-3)
    assert fractions["global minimum"] >= 0.9 and fractions["recovered all units"] >= 0.9
    worst = _line(out, "worst seed")
    seed, loss = _numbers(worst)[:2]
    assert 0 <= seed < 200 and 0 <= loss < 1.0 and re.search(r"units recovered [0-3]/3", worst)


SCRIPT_CHECKS = {"tour.py": _check_tour, "heavy_tails.py": _check_heavy_tails, "quickstart.py": _check_quickstart}


# heavy_tails.py (Monte Carlo of an infinite fourth moment, ~20 s of CPU beside the others) runs with -m slow; the
# potential, its Monte Carlo and its empirical loss are tested in test_almost_harmonic.py
@pytest.mark.parametrize("script", [pytest.param(s, marks=pytest.mark.slow) if s == "heavy_tails.py" else s
                                    for s in sorted(SCRIPT_CHECKS)])
def test_example_script_runs_and_prints_what_it_claims(script, started):
    SCRIPT_CHECKS[script](_finish(script, started[script]))


def test_readme_example_is_the_quickstart_script():
    """The README shows examples/quickstart.py: the code block is the file, word for word (less its docstring)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"`examples/quickstart.py`.*?```python\n(.*?)```", readme, re.S)
    assert block, "README.md shows no python block after naming examples/quickstart.py"
    code = re.sub(r'^""".*?"""\n', "", (EXAMPLES / "quickstart.py").read_text(), count=1, flags=re.S)
    assert block.group(1) == code


def _leaves(table):
    """The lists of a (dotted-key, so nested) TOML table: the grid's axes."""
    for value in table.values():
        yield from _leaves(value) if isinstance(value, dict) else [value]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_config_validates(path, tmp_path):
    data = tomllib.loads(path.read_text())
    cfg = load_config(path)
    assert cfg.name == data["name"] and cfg.seeds == data["seeds"] and cfg.activation == data["activation"]
    assert cfg.teacher.d == data["teacher"]["d"] and cfg.algorithm.name == data["algorithm"]["name"]
    assert cfg.algorithm.options == data["algorithm"]["options"]
    assert len(expand_grid(cfg)) == int(np.prod([len(v) for v in _leaves(data.get("grid", {}))]))
    # the loader is not a pass-through: the same file with a misspelt key is refused, the key named
    bad = tmp_path / path.name
    bad.write_text(path.read_text().replace("seeds =", "sedes =", 1))
    with pytest.raises(ConfigError, match="sedes"):
        load_config(bad)

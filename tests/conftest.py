"""Tests run in float64 (landscape numerics need it), like diffrax's test/conftest.py."""
import os
import shutil
import tempfile

# Before JAX starts its backend (here and in every worker and CLI subprocess, which inherit the environment): XLA
# compiles the suite's thousands of small programs with LLVM's optimisations off. Most of the suite's time is
# compiling, and the tests check numbers, not speed: this cuts the suite by about a fifth. XLA's fusion and
# algebraic passes still run; without fast-math (XLA's default) the numbers can differ from an optimised build by
# rounding only. The library, the CLI and the benchmarks outside the tests run fully optimised.
_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAGS}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
    # One persistent compilation cache and one folder of fast-potential tables for the whole session, as the CLI
    # and the library keep them per user: the two xdist workers (spawned after this hook, inheriting the
    # environment) and every CLI subprocess share them, so a program compiled or a table built anywhere in the
    # session is made once. Fresh folders per session, removed at the end, so every run starts as a fresh
    # machine does and nothing is written to the user's own cache.
    if hasattr(config, "workerinput"):
        return
    config._earnshaw_folders = [tempfile.mkdtemp(prefix="earnshaw-test-tables-")]
    os.environ["EARNSHAW_TABLE_CACHE_DIR"] = config._earnshaw_folders[0]
    if os.environ.get("EARNSHAW_COMPILATION_CACHE", "1") == "0":
        return
    from earnshaw._cli.common import use_compilation_cache

    folder = tempfile.mkdtemp(prefix="earnshaw-test-jax-cache-")
    config._earnshaw_folders.append(folder)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.05"
    use_compilation_cache()  # the CLI's own setup, reading the two variables above


def pytest_unconfigure(config):
    for folder in getattr(config, "_earnshaw_folders", []):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def getkey():
    """A fresh, deterministic PRNG key per call."""
    state = {"key": jax.random.key(1234)}

    def _next():
        state["key"], sub = jax.random.split(state["key"])
        return sub

    return _next


# `make test` deals whole files to two workers in collection order (`--dist loadfile`); alphabetical order
# leaves the heaviest files (verify, section5) to the end and one worker idle for a minute or more. The
# files that cost most (CPU seconds, measured from a junit report) go first; the rest follow by name.
_HEAVY_FIRST = ("test_docs.py", "test_verify.py", "test_section5.py", "test_dynamics.py", "test_sweep.py",
                "test_problem.py", "test_closed_form.py", "test_demo.py", "test_potentials.py", "test_examples.py",
                "test_potentials_fast.py", "test_almost_harmonic.py", "test_census_cli.py", "test_runtime.py",
                "test_online.py", "test_landscape.py", "test_biases.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(_HEAVY_FIRST)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), item.path.name))

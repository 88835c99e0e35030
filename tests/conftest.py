"""Tests run in float64 (landscape numerics need it), like diffrax's test/conftest.py."""
import jax
import pytest

jax.config.update("jax_enable_x64", True)


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

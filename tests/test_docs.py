"""The examples in the public API's docstrings run and print what they say.

Every public name of ``earnshaw`` must carry an example (``>>>``), and each example is run as a doctest
in JAX's default float32 mode, as a user who pastes it gets it (examples that need float64 turn it on
themselves), with outputs compared under ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``. An example that drifts
from the code fails here instead of misleading a reader.
"""
import doctest
import inspect

import jax
import pytest

import earnshaw as es

PUBLIC = sorted(n for n in dir(es) if not n.startswith("_") and (inspect.isfunction(getattr(es, n))
                                                                  or inspect.isclass(getattr(es, n))))


def test_every_public_function_and_class_has_an_example():
    missing = [n for n in PUBLIC if ">>>" not in (inspect.getdoc(getattr(es, n)) or "")]
    assert not missing, f"public names without a '>>>' example in their docstring: {missing}"


def _examples():
    finder = doctest.DocTestFinder(recurse=False)
    seen = set()
    for name in ["earnshaw"] + PUBLIC:
        obj = es if name == "earnshaw" else getattr(es, name)
        # each example sees its module's namespace, as ``python -m doctest`` gives it
        for test in finder.find(obj, name, globs=dict(vars(inspect.getmodule(obj)))):
            if test.examples and id(obj) not in seen:
                seen.add(id(obj))
                yield pytest.param(test, id=name)


@pytest.mark.parametrize("test", list(_examples()))
def test_docstring_example(test):
    x64 = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", False)
    try:
        _run(test)
    finally:  # the other tests of this worker run in float64 (conftest)
        jax.config.update("jax_enable_x64", x64)


def _run(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out = []
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)

"""The examples in the public API's docstrings run and print what they say.

Every public name of ``earnshaw`` must carry an example (``>>>``), and every example is run as a doctest
in a fresh process in JAX's default float32 mode, as a user who pastes it gets it (examples that need
float64 turn it on themselves), with outputs compared under ``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``. An
example that drifts from the code fails here instead of misleading a reader. The fresh process keeps the
float32 objects the examples build (cached potentials, compiled programs) out of this float64 test session.
"""
import inspect
import subprocess
import sys

import earnshaw as es

PUBLIC = sorted(n for n in dir(es) if not n.startswith("_") and (inspect.isfunction(getattr(es, n))
                                                                  or inspect.isclass(getattr(es, n))))

_RUNNER = r"""
import doctest, inspect, sys
import earnshaw as es

names = sys.argv[1:]
finder = doctest.DocTestFinder(recurse=False)
flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
failed, ran, seen = [], 0, set()
for name in ["earnshaw"] + names:
    obj = es if name == "earnshaw" else getattr(es, name)
    if id(obj) in seen:
        continue
    seen.add(id(obj))
    # each example sees its module's namespace, as ``python -m doctest`` gives it
    for test in finder.find(obj, name, globs=dict(vars(inspect.getmodule(obj)))):
        if not test.examples:
            continue
        runner = doctest.DocTestRunner(optionflags=flags)
        out = []
        runner.run(test, out=out.append)
        ran += 1
        if runner.failures:
            failed.append(name)
            print("".join(out))
print(f"ran the examples of {ran} docstrings; failed: {failed}")
sys.exit(1 if failed else 0)
"""


def test_every_public_function_and_class_has_an_example():
    missing = [n for n in PUBLIC if ">>>" not in (inspect.getdoc(getattr(es, n)) or "")]
    assert not missing, f"public names without a '>>>' example in their docstring: {missing}"


def test_docstring_examples_run_as_written():
    proc = subprocess.run([sys.executable, "-c", _RUNNER, *PUBLIC], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-20_000:] + proc.stderr[-5_000:]
    # every public name with an example ran (a name can share its object, e.g. an alias: counted once)
    assert f"ran the examples of {len({id(getattr(es, n)) for n in PUBLIC}) + 1} docstrings" in proc.stdout

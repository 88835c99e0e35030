"""The documentation site: ``mkdocs build --strict`` succeeds and the pages hold what they promise.

The site is built once per module (about 15 s here), from the repository root, into a temporary folder.
"""
import html
import inspect
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import earnshaw as es

ROOT = Path(__file__).resolve().parents[1]
API_PAGES = ["problem", "potentials", "networks", "solvers", "order", "landscape", "trajectory"]
COMMANDS = ["demo", "run", "sweep", "verify", "reproduce", "potential", "harmonic", "animate", "results"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    return out


def text_of(path: Path) -> str:
    """The visible text of a page: tags stripped, entities decoded, whitespace collapsed."""
    raw = path.read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", raw)).split())


def summary_line(obj) -> str:
    """A docstring's first line as the page shows it, without backticks and whitespace (which markup moves)."""
    first = inspect.getdoc(obj).strip().splitlines()[0]
    return "".join(first.replace("`", "").split())


def squeezed(text: str) -> str:
    return "".join(text.split())


def public_names():
    return sorted(n for n, v in vars(es).items()
                  if not n.startswith("_") and not isinstance(v, types.ModuleType))


def test_api_pages_render_the_docstrings(site):
    pages = {p: (site / "api" / p / "index.html").read_text(encoding="utf-8") for p in API_PAGES}
    solvers = squeezed(text_of(site / "api" / "solvers" / "index.html"))
    for fn in (es.gradient_descent, es.gradient_flow, es.second_gd):
        assert summary_line(fn) in solvers, fn.__name__
    # the Args: block became a parameter table, and the >>> example a highlighted code block
    assert "Parameters:" in solvers and "Returns:" in solvers
    assert re.search(r'id="earnshaw\.gradient_descent"', pages["solvers"])
    assert re.search(r'<span class="gp">&gt;&gt;&gt; </span>', pages["solvers"])
    for fn, page in ((es.potential, "potentials"), (es.analyze, "landscape"), (es.random_teacher, "networks")):
        assert summary_line(fn) in squeezed(text_of(site / "api" / page / "index.html")), fn.__name__
    # no templating or Sphinx role leaks into the rendered reference
    for page, raw in pages.items():
        assert "{args}" not in raw and ":class:" not in raw and ":func:" not in raw, page


def test_every_public_name_has_an_api_entry(site):
    raw = "".join((site / "api" / p / "index.html").read_text(encoding="utf-8") for p in API_PAGES)
    missing = [n for n in public_names() if f'id="earnshaw.{n}"' not in raw]
    assert not missing, f"public names without an entry in docs/api/*.md: {missing}"


def test_math_sections_0_to_12(site):
    raw = (site / "math" / "index.html").read_text(encoding="utf-8")
    for n in range(13):
        m = re.search(rf'<h2 id="section-{n}"[^>]*>(.*?)</h2>', raw, flags=re.S)
        assert m, f"docs/math.md has no section {n}"
        assert re.sub(r"<[^>]+>", "", m.group(1)).strip().startswith(f"{n}. "), m.group(1)
    for sub in ("1a", "1b"):
        assert f'id="section-{sub}"' in raw
    # the formulas are typeset by MathJax from arithmatex's output, not left as raw TeX delimiters
    assert raw.count('class="arithmatex"') > 100
    assert "$$" not in raw


def _number_forms(x):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return {str(x)}
    return {f"{x:,}" if isinstance(x, int) else f"{x:,.0f}", f"{x:.3g}", f"{x:.2g}", f"{x:.2e}"}


def test_benchmarks_page_shows_the_committed_results(site):
    page = text_of(site / "benchmarks" / "index.html")
    results = ROOT / "benchmarks" / "results"
    dynamics = json.loads((results / "dynamics.json").read_text())
    for row in dynamics["rows"]:
        assert row["size"] in page
        for key, value in row.items():
            if key not in ("bench", "size"):
                assert any(f in page for f in _number_forms(value)), (row["bench"], row["size"], key, value)
    compile_ = json.loads((results / "compile.json").read_text())
    for row in compile_["rows"]:
        assert f"{row['entry']}" in page
        assert any(f"{f} s" in page for f in _number_forms(row["slowest_program_s"])), row["entry"]
    for name in ("section5.txt", "section5_depth2.txt"):
        for line in (results / name).read_text().splitlines():
            cells = line.split()
            if cells and re.fullmatch(r"\d+x\d+", cells[0]):
                assert all(c in page for c in cells), (name, line)
    for name in sorted(p.name for p in results.iterdir()):
        assert f"benchmarks/results/{name}" in page, f"{name} is not rendered on the benchmarks page"


def test_every_figure_is_shown(site):
    pages = "".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    for fig in sorted((ROOT / "docs" / "figures").glob("*.png")):
        assert (site / "figures" / fig.name).exists(), fig.name
        assert f"figures/{fig.name}" in pages, f"docs/figures/{fig.name} is on no page"


def test_command_pages(site):
    for cmd in COMMANDS:
        page = text_of(site / "cli" / cmd / "index.html")
        assert f"earnshaw {cmd}" in page
        assert "--help" in page and "option" in page, cmd


def test_readme_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("# earnshaw\n\n```bash\n"
                             "make demo    # create .venv, install pinned dependencies, run the main job\n"
                             "make test    # create/reuse .venv, run the test suite (what CI runs)\n```\n")
    for target in re.findall(r"\]\(((?:docs/|LICENSE|CITATION)[^)#]*)", readme):
        assert (ROOT / target).exists(), target
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def _mentions_of_math_file(*tops):
    name = "MATH" + ".md"  # spelt in two parts so that this file does not match itself
    return [f"{p.relative_to(ROOT)}:{i}" for top in tops
            for p in ([ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*"))
            if p.is_file() and p.suffix in (".md", ".py", ".toml", ".txt", ".json", ".yml")
            for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if name in line]


@pytest.mark.parametrize("tops", [("README.md", "docs", "tests", "benchmarks", "examples"), ("src",)],
                         ids=["docs-tests-examples", "src"])
def test_no_reference_to_a_missing_math_file(tops):
    """The mathematics is docs/math.md: nothing may cite the math file the repository never had."""
    hits = _mentions_of_math_file(*tops)
    assert not hits, f"references to a file the repository does not have (use docs/math.md): {hits}"

"""mkdocs hook: pages that are written from the repository at build time.

* ``<!-- earnshaw:bench NAME -->``, on a line of its own, becomes the table(s) of ``benchmarks/results/NAME.json`` or
  ``NAME.txt`` (``dynamics``, ``compile``, ``section5``, ``section5_depth2``), so the benchmarks page
  always shows the measured results that are committed, not numbers copied by hand.
* ``<!-- earnshaw:cli COMMAND -->`` becomes the table of the command's arguments and options, read
  from the typer application itself, so a command's page cannot drift from ``earnshaw COMMAND --help``.

A marker that names a missing file or command fails the build (mkdocs reports the exception), so a
renamed result file is noticed by ``mkdocs build --strict`` and the docs test.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
# A marker is a line of its own, so that the docs can mention one in running text.
_MARKER = re.compile(r"^[ \t]*<!--\s*earnshaw:(bench|cli)\s+([\w-]+)\s*-->[ \t]*$", re.M)


def on_config(config, **kwargs):
    # Document (and import, for the CLI tables and mkdocstrings' inspection) this checkout's source,
    # not whichever earnshaw the environment has installed.
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return config


def on_serve(server, config, builder, **kwargs):
    server.watch(str(RESULTS))
    server.watch(str(ROOT / "src"))
    return server


def on_page_markdown(markdown, page, config, files, **kwargs):
    def replace(match):
        kind, name = match.groups()
        return bench_markdown(name) if kind == "bench" else cli_markdown(name)
    return _MARKER.sub(replace, markdown)


# ---------------------------------------------------------------------------------------------- tables

def _fmt(x, digits=3):
    """A number as a table shows it: ints with thousands separators, floats to ``digits`` figures."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x == 0 or not math.isfinite(x):
            return str(x)
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) < 1e-3:
            return f"{x:.2e}"
        return f"{x:.{digits}g}"
    return str(x).replace("|", "\\|")


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ benchmarks

_DYNAMICS_COLUMNS = {  # result key -> column title, in the order shown
    "size": "size", "solver": "solver", "k": "k", "d": "d", "K": "K", "M": "M", "seeds": "seeds", "steps": "steps",
    "closed_form_steps_per_s": "earnshaw, closed-form gradient (steps/s)",
    "autodiff_steps_per_s": "earnshaw, autodiff (steps/s)",
    "torch_steps_per_s": "PyTorch eager (steps/s)", "numpy_steps_per_s": "NumPy (steps/s)",
    "closed_form_vs_torch": "closed form / PyTorch", "autodiff_vs_torch": "autodiff / PyTorch",
    "closed_form_vs_numpy": "closed form / NumPy",
    "earnshaw_s": "earnshaw (s)", "scipy_rk45_s": "scipy RK45 (s)", "ratio_vs_scipy": "ratio",
    "max_abs_diff": "max end-point difference",
    "closed_form_instance_steps_per_s": "closed form (instance-steps/s)",
    "autodiff_instance_steps_per_s": "autodiff (instance-steps/s)",
    "instance_steps_per_s": "instance-steps/s",
    "earnshaw_ms": "earnshaw (ms)", "torch_ms": "PyTorch autograd (ms)", "ratio_vs_torch": "ratio",
    "compile_s": "compile (s)", "compile_default_s": "compile, default options (s)",
    "earnshaw_samples_per_s": "earnshaw (samples/s)", "torch_samples_per_s": "PyTorch (samples/s)",
    "direct_steps_per_s": "direct GD (steps/s)", "order_steps_per_s": "order-parameter GD (steps/s)",
    "d_over_k": "d / k", "multiply_add_ratio": "multiply-add ratio 4 k^2 d / 6 k^3",
    "seconds": "seconds after compilation", "first_call_seconds": "first call (s)", "target_seconds": "target (s)",
}


def _dynamics(data):
    groups = {}
    for row in data["rows"]:
        groups.setdefault(row["bench"], []).append(row)
    out = []
    env = data.get("environment")
    if env:
        out.append("*Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()) + ".*")
    for bench, rows in groups.items():
        keys = [k for k in _DYNAMICS_COLUMNS if any(k in r for r in rows)]
        keys += [k for r in rows for k in r if k not in keys and k != "bench"]
        keys = list(dict.fromkeys(keys))
        body = [[_fmt(r.get(k, "")) if k in r else "" for k in keys] for r in rows]
        out.append(f"**{bench}**\n\n" + _table([_DYNAMICS_COLUMNS.get(k, k) for k in keys], body))
    return "\n\n".join(out)


def _compile(data):
    rows = data["rows"]
    entries = list(dict.fromkeys(r["entry"] for r in rows))
    sizes = list(dict.fromkeys((r["k"], r["d"]) for r in rows))
    by = {(r["entry"], r["k"], r["d"]): r for r in rows}
    head = ["entry point"] + [f"slowest program, k = d = {k}" if k == d else f"slowest program, k={k} d={d}"
                              for k, d in sizes]
    head += [f"first call - repeat, k = d = {k}" for k, d in sizes]
    body = []
    for e in entries:
        cells = [f"`{e}`"]
        cells += [_fmt(by[(e, k, d)]["slowest_program_s"]) + " s" if (e, k, d) in by else "" for k, d in sizes]
        cells += [_fmt(by[(e, k, d)]["first"] - by[(e, k, d)]["repeat"], 2) + " s" if (e, k, d) in by else ""
                  for k, d in sizes]
        body.append(cells)
    intro = []
    if "gd_k5_steps_per_s" in data:
        intro.append(f"Reference speed of this run: GD at k = d = 5 with the closed-form gradient, "
                     f"{_fmt(data['gd_k5_steps_per_s'])} steps/s.")
    if "target_s" in data:
        intro.append(f"Target: every program compiles in under {_fmt(data['target_s'])} s.")
    repeats = {r.get("repeats") for r in rows} - {None}
    if repeats:
        intro.append(f"Each figure is the best of {', '.join(map(str, sorted(repeats)))} fresh processes.")
    return " ".join(intro) + "\n\n" + _table(head, body)


_ROW = re.compile(r"^\s*\d+x\d+\s")


def _text_table(text):
    """``bench_section5`` output: a header line, a whitespace table of cells, then summary lines."""
    lines = text.rstrip("\n").splitlines()
    start = next((i for i, l in enumerate(lines) if l.split()[:1] == ["cell"]), None)
    if start is None:
        return "```text\n" + text.rstrip("\n") + "\n```"
    head = lines[start].split()
    # "+compile" and "ms/step", "jax max |dMSE|" are single columns in the printed header
    cols = ["cell", "steps", "PyTorch (s)", "earnshaw (s)", "earnshaw + compile (s)", "ratio",
            "ms per step", "max train-MSE difference"] if len(head) >= 8 else head
    rows, i = [], start + 1
    while i < len(lines) and _ROW.match(lines[i]):
        rows.append([c.replace("|", "\\|") for c in lines[i].split()])
        i += 1
    before = [l for l in lines[:start] if l.strip()]
    after = [l for l in lines[i:] if l.strip()]
    out = []
    if before:
        out.append("*" + " ".join(before).replace("*", "\\*") + "*")
    out.append(_table(cols[:len(rows[0])] if rows else cols, rows))
    if after:
        out.append("```text\n" + "\n".join(after) + "\n```")
    return "\n\n".join(out)


def bench_markdown(name):
    path_json, path_txt = RESULTS / f"{name}.json", RESULTS / f"{name}.txt"
    if path_json.exists():
        data = json.loads(path_json.read_text())
        body = _compile(data) if "gd_k5_steps_per_s" in data or name == "compile" else _dynamics(data)
        source = path_json
    elif path_txt.exists():
        body, source = _text_table(path_txt.read_text()), path_txt
    else:
        raise FileNotFoundError(f"benchmarks page: no benchmarks/results/{name}.json or .txt "
                                f"(have: {', '.join(sorted(p.name for p in RESULTS.glob('*')))})")
    return body + f"\n\n<small>Source: `{source.relative_to(ROOT).as_posix()}`.</small>\n"


# ------------------------------------------------------------------------------------------------- CLI

def _cli_group():
    import typer.main  # imported at build time only: the CLI pages need the live typer application
    from earnshaw.cli import app
    return typer.main.get_command(app)


def cli_markdown(name):
    group = _cli_group()
    commands = getattr(group, "commands", {})
    if name not in commands:
        raise KeyError(f"docs: no command {name!r} in the earnshaw CLI (have: {', '.join(sorted(commands))})")
    cmd = commands[name]
    usage = [f"earnshaw {name}"]
    rows = []
    for p in cmd.params:
        opts = list(getattr(p, "opts", [])) + list(getattr(p, "secondary_opts", []))
        is_arg = type(p).__name__.endswith("Argument")
        if is_arg:
            label = p.name.upper()
            usage.append(label if p.required else f"[{label}]")
        else:
            label = " / ".join(opts)
        desc = (getattr(p, "help", None) or "").replace("|", "\\|").replace("[", "\\[")
        default = getattr(p, "default", None)
        if getattr(p, "is_flag", False) and default is False:
            default = None
        shown = "" if default is None or callable(default) else f"`{default}`"
        kind = "argument" + ("" if p.required else " (optional)") if is_arg else "option"
        rows.append([f"`{label}`", kind, desc, shown])
    if any(not type(p).__name__.endswith("Argument") for p in cmd.params):
        usage.insert(1, "[OPTIONS]")
    text = (cmd.help or "").strip()
    out = ["```bash\n" + " ".join(usage) + "\n```", text.replace("[", "\\["),
           _table(["name", "kind", "meaning", "default"], rows),
           "<small>Generated from the command's own definition; `earnshaw "
           f"{name} --help` prints the same.</small>"]
    return "\n\n".join(x for x in out if x)

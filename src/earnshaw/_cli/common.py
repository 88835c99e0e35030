"""Helpers shared by the CLI commands: console, run folders, x64, errors."""
from __future__ import annotations

import datetime as _dt
import os
import pathlib
import platform
import sys

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def enable_x64():
    """Landscape numerics need float64; the CLI is an entry point, so it turns it on here."""
    import jax

    jax.config.update("jax_enable_x64", True)


def use_cpu_cores(n: int) -> int:
    """Expose ``n`` CPU cores as ``n`` XLA devices, so seed-batched work can run on all of them
    (:func:`earnshaw.deep.spread_seeds`). Only possible before JAX's first computation; returns
    the device count in effect."""
    import jax

    if n > 1:
        try:
            jax.config.update("jax_num_cpu_devices", int(n))
        except RuntimeError:  # backend already initialised (e.g. in tests): keep what there is
            pass
    return jax.local_device_count()


def fail(message: str, code: int = 2):
    """Print a clear error and exit."""
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def run_dir(name: str, root: str | os.PathLike = "runs") -> pathlib.Path:
    """A new ``runs/<name>-<timestamp>/`` folder."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = pathlib.Path(root) / f"{name}-{stamp}"
    i = 1
    while path.exists():
        path = pathlib.Path(root) / f"{name}-{stamp}-{i}"
        i += 1
    path.mkdir(parents=True)
    return path


def environment() -> dict:
    """Versions and platform for meta.json."""
    import jax

    import earnshaw

    info = {"earnshaw": earnshaw.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "jax": jax.__version__, "backend": jax.default_backend(), "x64": bool(jax.config.jax_enable_x64)}
    for mod in ("diffrax", "optax", "numpy", "scipy"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            pass
    return info


# One atomic JSON writer for the whole package.
from earnshaw.store import write_json_atomic as write_json_atomic  # noqa: E402,F401

"""Helpers shared by the CLI commands: consoles, x64, the compilation cache, errors, progress and backend
options."""
from __future__ import annotations

import importlib.util
import os
import pathlib
import time

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def enable_x64():
    """Landscape numerics need float64; the CLI is an entry point, so it turns it on here."""
    import jax

    jax.config.update("jax_enable_x64", True)


def use_compilation_cache() -> str | None:
    """Keep XLA's compiled programs on disk between ``earnshaw`` runs (JAX's persistent compilation cache).

    A second ``earnshaw demo`` or ``verify`` then loads what the first compiled instead of compiling it again.
    The folder is ``$JAX_COMPILATION_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/earnshaw/jax`` (``~/.cache``
    by default); ``EARNSHAW_COMPILATION_CACHE=0`` turns it off. It is set in the environment too, so the
    worker processes of ``--workers N`` and of a Ray cluster the command starts share it. Programs that compile in under 0.1 s are not
    kept. With ``filelock`` installed the folder is capped at 2 GiB (least recently used programs go first)
    and locked while written; without it JAX reads a half-written entry as a miss and compiles.

    Returns:
      The folder in use, or ``None`` when turned off.
    """
    if os.environ.get("EARNSHAW_COMPILATION_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    import jax

    folder = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(
        pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "earnshaw" / "jax")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
    if importlib.util.find_spec("filelock") is not None and "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(2 << 30)
        jax.config.update("jax_compilation_cache_max_size", 2 << 30)
    if jax.config.jax_compilation_cache_max_size != -1:  # a size cap (ours or the user's): JAX reads access times
        _date_undated_entries(pathlib.Path(folder))
    return folder


def _date_undated_entries(folder: pathlib.Path) -> None:
    """Give every program in the cache folder the access-time file that JAX's size cap reads.

    A process without a cap (another environment sharing the folder, one without ``filelock``) writes entries
    without one; with the cap on, JAX then fails every later write into the folder ("Error writing persistent
    compilation cache entry ... -atime") and compiles again each run."""
    now = time.time_ns().to_bytes(8, "little")
    for entry in folder.glob("*-cache"):  # nothing when the folder does not exist yet
        atime = entry.with_name(entry.name[: -len("-cache")] + "-atime")
        if not atime.exists():
            try:
                atime.write_bytes(now)
            except OSError:  # a read-only or vanished entry: JAX reports it as before
                pass


def use_cpu_cores(n: int) -> int:
    """Expose ``n`` CPU cores as ``n`` XLA devices, so seed-batched work can run on all of them
    (:func:`earnshaw.experiments.section5.deep.spread_seeds`). Only possible before JAX's first computation; returns
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


def cell_progress(reporter, *, resuming: bool = True):
    """A runtime ``progress`` callback (:func:`earnshaw.runtime.run_cells`) that drives ``reporter``:
    the count of cells, the label of the last finished one, and a line when a folder is resumed."""

    def on_event(ev):
        if ev["event"] == "start":
            reporter.start(ev["total"], ev["done"])
            if resuming and ev["done"]:
                reporter.print(f"resuming {ev['run_dir']}: {ev['done']} of {ev['total']} cells already done")
        elif ev["event"] == "cell":
            reporter.update(done=ev["done"], description=ev["label"], force=True)

    return on_event


def backend_options(backend: str, address, workers: int = 1):
    """Check ``--backend``/``--address``/``--workers`` before anything is created; exit with the reason if bad."""
    from earnshaw.runtime import check_backend

    try:
        check_backend(backend, address, workers)
    except (ValueError, RuntimeError) as err:
        fail(str(err))


def validation_message(err) -> str:
    """A pydantic ``ValidationError`` as one line per problem, each naming its field (``seeds: ...``)."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "config"
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in e and not isinstance(e["input"], dict):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{where}: {msg}")
    return "\n".join(lines)


def start_or_resume(resume, command: str, model, build, *, rename=lambda msg: msg):
    """``(run, cfg)`` of a command: the folder ``resume`` and its saved config, or no folder and ``build()``.

    Checks nothing else; a config that does not validate, or a folder that is not this command's, exits with the
    reason (``rename`` maps the pydantic field names in the message to the command's option names).
    """
    from pydantic import ValidationError

    from earnshaw.store import RunFolder

    try:
        if resume is not None:
            run = RunFolder.open(resume, command=command)
            return run, model.model_validate(run.config_data())
        return None, build()
    except ValidationError as err:
        fail(rename(validation_message(err)))
    except (ValueError, FileNotFoundError) as err:  # RunFolderError is a ValueError
        fail(str(err))

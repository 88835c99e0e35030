"""Results on disk: the run folder every command writes, and the atomic writers under it.

Every write goes to a temporary file in the same folder and is renamed into place
(``os.replace``), so a crash or ``kill -9`` never leaves a half-written file.
Nothing is ever read back with pickle or eval.

A run folder (:class:`RunFolder`) is the same for ``demo``, ``run``, ``sweep``, ``verify``
and ``reproduce``::

    config.toml              the validated config of the command (defaults filled in)
    meta.json                schema, command, name, creation time, environment (versions,
                             platform, git revision), sessions (backend, timings, cells computed)
                             and what the command adds at the end (a summary, timings)
    cells/<id>.parquet       one committed cell: its rows (the commit point of the cell)
    cells/<id>.npz           the cell's arrays, if any (written before the Parquet file)
    cells/<id>.json          the cell's full record, if any (written before the Parquet file)
    checkpoints/<id>.npz     in-cell checkpoints of a cell still running (removed when it commits)
    run.log                  one line per event: ``<time> <session> <event> <cell id> <seconds>``
    results.parquet          every committed cell's rows, in cell order (rebuilt from cells/)
    figures/                 PNGs

A cell is done when its Parquet file exists, so resuming a folder skips exactly the committed
cells; ``earnshaw results`` reads ``meta.json`` (which names the command) and the rows.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import tomllib
import uuid
from typing import Optional

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tomli_w

import earnshaw

__all__ = ["write_parquet_atomic", "read_parquet", "write_json_atomic", "read_json", "write_text_atomic",
           "write_npz_atomic", "write_csv_atomic", "RunFolder", "RunFolderError", "SCHEMA", "environment",
           "git_revision"]

#: Version of the run-folder layout, written into every ``meta.json``.
SCHEMA = 2


def _tmp(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_parquet_atomic(path, rows) -> pathlib.Path:
    """Write ``rows`` (list of flat dicts, or a dict of columns) as Parquet, atomically.

    Example::

        write_parquet_atomic("out.parquet", [{"seed": 0, "loss": 0.1}])
    """
    path = pathlib.Path(path)
    table = pa.Table.from_pylist(rows) if isinstance(rows, list) else pa.table(rows)
    tmp = _tmp(path)
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_parquet(path) -> list:
    """Rows of a Parquet file as a list of dicts."""
    return pq.read_table(path).to_pylist()


def write_json_atomic(path, obj) -> pathlib.Path:
    """Write ``obj`` as indented JSON, atomically (numbers and strings; other objects as ``str``)."""
    return write_text_atomic(path, json.dumps(obj, indent=2, default=str))


def write_text_atomic(path, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old file or the new."""
    path = pathlib.Path(path)
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_npz_atomic(path, arrays: dict) -> pathlib.Path:
    """Write ``arrays`` (name -> array) as a compressed ``.npz``, atomically; read it with ``allow_pickle=False``."""
    path = pathlib.Path(path)
    tmp = _tmp(path)
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, path)
    return path


def write_csv_atomic(path, rows: list) -> pathlib.Path:
    """Write ``rows`` (flat dicts with the same keys) as CSV with a header, atomically."""
    path = pathlib.Path(path)
    tmp = _tmp(path)
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path


def read_json(path):
    """The JSON data in ``path``."""
    return json.loads(pathlib.Path(path).read_text())


def git_revision() -> Optional[str]:
    """The git commit of the earnshaw source tree (``+dirty`` when it has changes), or None."""
    here = pathlib.Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """Versions, platform, host and git revision, for ``meta.json``."""
    info = {"earnshaw": earnshaw.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "host": socket.gethostname(), "jax": jax.__version__, "jax_backend": jax.default_backend(),
            "x64": bool(jax.config.jax_enable_x64), "git_revision": git_revision()}
    for mod in ("diffrax", "optax", "numpy", "scipy", "pyarrow", "pydantic"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - reported, not required
            pass
    return info


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


class RunFolderError(ValueError):
    """A folder that is not a run folder, or one of another command or config."""


class RunFolder:
    """One run of a command on disk: config, meta, committed cells, log; see the module docstring.

    Make one with :meth:`create` (a new ``<root>/<name>-<time>/``), :meth:`at` (a given path,
    new or to resume) or :meth:`open` (an existing folder, to read or resume).

    Example::

        run = RunFolder.create("runs", "demo", command="demo", config=cfg)
        if not run.done("chunk-0"):
            run.commit("chunk-0", rows=[{"seed": 0, "loss": 0.1}])
        run.write_results()
    """

    def __init__(self, path, meta: dict):
        self.path = pathlib.Path(path)
        self.meta = meta
        self.session: Optional[dict] = None

    # -- making and opening ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, root, name: str, *, command: str, config) -> "RunFolder":
        """A new folder ``<root>/<name>-<YYYYmmdd-HHMMSS>[-i]/`` holding ``config`` (a pydantic model)."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        root = pathlib.Path(root)
        path, i = root / f"{name}-{stamp}", 1
        while True:
            try:
                path.mkdir(parents=True)
                break
            except FileExistsError:
                path, i = root / f"{name}-{stamp}-{i}", i + 1
        return cls._init(path, name, command, config)

    @classmethod
    def at(cls, path, name: str, *, command: str, config) -> "RunFolder":
        """The run folder at ``path``: opened if it holds a run (whose command and config must match), else made."""
        path = pathlib.Path(path)
        if (path / "meta.json").exists():
            run = cls.open(path, command=command)
            if _canonical(run.config_data()) != _canonical(_dump(config)):
                raise RunFolderError(f"{path} holds a different config; resume it with its own config.toml "
                                     "or start a new run folder")
            return run
        path.mkdir(parents=True, exist_ok=True)
        return cls._init(path, name, command, config)

    @classmethod
    def _init(cls, path: pathlib.Path, name: str, command: str, config) -> "RunFolder":
        write_text_atomic(path / "config.toml", tomli_w.dumps(_dump(config)))
        meta = {"schema": SCHEMA, "command": command, "name": name, "created": _now(), "environment": environment(),
                "sessions": []}
        write_json_atomic(path / "meta.json", meta)
        return cls(path, meta)

    @classmethod
    def open(cls, path, *, command: Optional[str] = None) -> "RunFolder":
        """An existing run folder; with ``command``, it must be that command's.

        Raises:
          FileNotFoundError: no such folder.
          RunFolderError: no readable ``meta.json`` of this layout, or another command's folder.
        """
        path = pathlib.Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such run folder")
        if not (path / "meta.json").is_file():
            raise RunFolderError(f"{path} is not a run folder (no meta.json)")
        try:
            meta = read_json(path / "meta.json")
        except (ValueError, OSError) as err:
            raise RunFolderError(f"{path}: unreadable run folder (meta.json: {err})") from None
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA or "command" not in meta:
            raise RunFolderError(f"{path}: unreadable run folder (meta.json is not a schema-{SCHEMA} run meta)")
        if command is not None and meta["command"] != command:
            raise RunFolderError(f"{path} is a run of `earnshaw {meta['command']}`, not of `earnshaw {command}`")
        return cls(path, meta)

    # -- config and meta --------------------------------------------------------------------------------------

    @property
    def command(self) -> str:
        return self.meta["command"]

    def config_data(self) -> dict:
        """The stored config as plain data (parse it with the command's config model)."""
        try:
            return tomllib.loads((self.path / "config.toml").read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise RunFolderError(f"{self.path}: unreadable config.toml ({err})") from None

    def update_meta(self, **fields):
        """Set top-level ``meta.json`` fields and write it (atomically)."""
        self.meta.update(fields)
        self.save_meta()

    def save_meta(self):
        write_json_atomic(self.path / "meta.json", self.meta)

    # -- sessions and the log -------------------------------------------------------------------------------

    def begin_session(self, **info) -> dict:
        """Record a new session (one process working on this folder) in ``meta.json``; returns its record."""
        self.clean_tmp()
        env = environment()
        self.session = {"session": uuid.uuid4().hex[:8], "started": _now(), "pid": os.getpid(), "environment": env,
                        "cells_computed": [], "finished": None, **info}
        self.meta["sessions"].append(self.session)
        self.meta["environment"] = env
        self.save_meta()
        return self.session

    def end_session(self, **info):
        """Close the current session's record with ``info`` (e.g. ``seconds``)."""
        if self.session is None:
            return
        self.session.update(finished=_now(), **info)
        self.save_meta()

    def log(self, event: str, cell_id: str = "-", seconds: float = float("nan")):
        """Append ``<time> <session> <event> <cell id> <seconds>`` to ``run.log`` (one short O_APPEND write)."""
        session = self.session["session"] if self.session else "-"
        with open(self.path / "run.log", "a") as fh:
            fh.write(f"{_now()} {session} {event} {cell_id} {seconds:.3f}\n")

    def log_lines(self) -> list:
        """``[time, session, event, cell id, seconds]`` per line of ``run.log``."""
        path = self.path / "run.log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    # -- cells ------------------------------------------------------------------------------------------------

    @property
    def cells_dir(self) -> pathlib.Path:
        d = self.path / "cells"
        d.mkdir(exist_ok=True)
        return d

    def checkpoint(self, cell_id: str) -> pathlib.Path:
        """Where a running cell may keep its checkpoint (removed when the cell commits)."""
        d = self.path / "checkpoints"
        d.mkdir(exist_ok=True)
        return d / f"{cell_id}.npz"

    def done(self, cell_id: str) -> bool:
        """Whether cell ``cell_id`` is committed."""
        return (self.path / "cells" / f"{cell_id}.parquet").exists()

    def committed(self) -> list:
        """Ids of the committed cells (in no particular order)."""
        return [f.stem for f in (self.path / "cells").glob("*.parquet") if not f.name.startswith(".")]

    def commit(self, cell_id: str, rows: list, *, arrays: Optional[dict] = None, record: Optional[dict] = None,
               seconds: float = float("nan")):
        """Commit a finished cell: arrays and record first, then its rows (the commit point), then a log line.

        ``rows`` is a list of flat dicts (one Parquet row each); ``arrays`` name -> ndarray; ``record`` any
        JSON data. A kill between two of these writes leaves the cell uncommitted (it is recomputed) or
        committed but unlogged; never half-written."""
        cells = self.cells_dir
        if arrays is not None:
            write_npz_atomic(cells / f"{cell_id}.npz", arrays)
        if record is not None:
            write_json_atomic(cells / f"{cell_id}.json", record)
        write_parquet_atomic(cells / f"{cell_id}.parquet", rows)
        ck = self.path / "checkpoints" / f"{cell_id}.npz"
        if ck.exists():
            ck.unlink()
        if self.session is not None:
            self.session["cells_computed"].append(cell_id)
        self.log("done", cell_id, seconds)

    def cell_rows(self, cell_id: str) -> list:
        return read_parquet(self.path / "cells" / f"{cell_id}.parquet")

    def cell_arrays(self, cell_id: str) -> dict:
        """The arrays committed with cell ``cell_id``."""
        path = self.path / "cells" / f"{cell_id}.npz"
        if not path.exists():
            raise FileNotFoundError(f"no arrays for cell {cell_id!r} in {self.path} (is the cell finished?)")
        with np.load(path, allow_pickle=False) as z:
            return {key: z[key] for key in z.files}

    def cell_record(self, cell_id: str) -> dict:
        """The JSON record committed with cell ``cell_id``."""
        return read_json(self.path / "cells" / f"{cell_id}.json")

    def rows(self, *, from_cells: bool = True) -> list:
        """Every committed row, sorted by ``cell_index`` then ``seed`` (where the rows have them).

        With ``from_cells=False``, ``results.parquet`` is read if it exists."""
        if not from_cells and (self.path / "results.parquet").exists():
            return read_parquet(self.path / "results.parquet")
        files = [f for f in sorted((self.path / "cells").glob("*.parquet")) if not f.name.startswith(".")]
        if not files:
            return []
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
        rows = table.to_pylist()
        rows.sort(key=lambda r: (r.get("cell_index", 0), r.get("seed", 0)))
        return rows

    def write_results(self) -> int:
        """Rewrite ``results.parquet`` atomically from the committed cells; returns the number of rows."""
        rows = self.rows()
        if rows:
            write_parquet_atomic(self.path / "results.parquet", rows)
        return len(rows)

    def clean_tmp(self):
        """Remove temporary files a killed process left behind (they are never read)."""
        for folder in (self.path, self.path / "cells", self.path / "checkpoints", self.path / "figures"):
            for tmp in folder.glob(".*.tmp*"):
                try:
                    tmp.unlink()
                except OSError:  # pragma: no cover - another process removed it
                    pass

    def figures_dir(self) -> pathlib.Path:
        d = self.path / "figures"
        d.mkdir(exist_ok=True)
        return d

    def __repr__(self):
        return f"RunFolder({str(self.path)!r}, command={self.meta.get('command')!r})"


def _dump(config) -> dict:
    """A config (pydantic model or dict) as TOML-ready plain data (no None values)."""
    data = config.model_dump(mode="json", exclude_none=True) if hasattr(config, "model_dump") else dict(config)
    return _drop_none(data)


def _drop_none(data):
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    return data


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))

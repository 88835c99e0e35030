"""Results on disk: Parquet tables and JSON metadata, written atomically.

Every write goes to a temporary file in the same folder and is renamed into place
(``os.replace``), so a crash or ``kill -9`` never leaves a half-written file.
Nothing is ever read back with pickle or eval.
"""
from __future__ import annotations

import json
import os
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["write_parquet_atomic", "read_parquet", "write_json_atomic", "read_json", "write_text_atomic"]


def _tmp(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_parquet_atomic(path, rows) -> pathlib.Path:
    """Write ``rows`` (list of flat dicts, or a dict of columns) as Parquet, atomically."""
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
    return write_text_atomic(path, json.dumps(obj, indent=2, default=str))


def write_text_atomic(path, text: str) -> pathlib.Path:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old file or the new."""
    path = pathlib.Path(path)
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def read_json(path):
    return json.loads(pathlib.Path(path).read_text())

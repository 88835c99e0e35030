"""The ``earnshaw`` command line (typer). Each command lives in a module of :mod:`earnshaw._cli`."""
from __future__ import annotations

import importlib

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="earnshaw: learning depth-2 networks as electron-proton dynamics.")

#: Modules that define commands; each has ``register(app)``.
COMMAND_MODULES = [
    "earnshaw._cli.potential_cmd",
    "earnshaw._cli.demo_cmd",
    "earnshaw._cli.reproduce_cmd",
    "earnshaw._cli.verify_cmd",
    "earnshaw._cli.sweep_cmd",
    "earnshaw._cli.plateau_cmd",
    "earnshaw._cli.results_cmd",
    "earnshaw._cli.census_cmd",
    "earnshaw._cli.harmonic_cmd",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main():
    from earnshaw._cli.common import use_compilation_cache

    use_compilation_cache()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

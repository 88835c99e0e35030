"""``earnshaw results RUN_DIR``: the tables of any run folder, read back from its one layout.

Every command writes a :class:`earnshaw.store.RunFolder` whose ``meta.json`` names the command;
the command's own module prints its results (the tables it printed when it ran)."""
from __future__ import annotations

import importlib

import typer

from earnshaw._cli.common import fail

#: command in meta.json -> module with ``show_results(run, as_json)``.
SHOW = {
    "sweep": "earnshaw._cli.sweep_cmd",
    "demo": "earnshaw._cli.demo_cmd",
    "verify": "earnshaw._cli.verify_cmd",
    "reproduce": "earnshaw._cli.reproduce_cmd",
    "plateau": "earnshaw._cli.plateau_cmd",
    "census": "earnshaw._cli.census_cmd",
}


def register(app: typer.Typer):
    @app.command()
    def results(
        run_dir_: str = typer.Argument(..., metavar="RUN_DIR",
                                       help="a run folder of earnshaw run, sweep, demo, verify, reproduce or plateau"),
        as_json: bool = typer.Option(False, "--json", help="print the results as JSON"),
    ):
        """Summarise a run folder: for run and sweep, per cell the success rate with a Wilson 95% interval and
        the verdicts; demo, verify and reproduce folders print the tables their command printed."""
        from earnshaw.store import RunFolder, RunFolderError

        try:
            run = RunFolder.open(run_dir_)
        except (FileNotFoundError, RunFolderError) as err:
            fail(str(err))
        if run.command not in SHOW:
            fail(f"{run_dir_}: a run of an unknown command {run.command!r}; known: {', '.join(SHOW)}")
        try:
            importlib.import_module(SHOW[run.command]).show_results(run, as_json)
        except typer.Exit:
            raise
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as err:
            # a truncated or hand-edited file: say which folder, not a traceback
            fail(f"{run_dir_}: unreadable run folder ({type(err).__name__}: {err})")

"""Command-line modules; each exposes ``register(app)`` and is listed in :mod:`earnshaw.cli`."""

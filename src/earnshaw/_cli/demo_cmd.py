"""``earnshaw demo``: the main job on defaults."""
from __future__ import annotations

import typer
from rich.table import Table

from earnshaw._cli.common import console, enable_x64


def register(app: typer.Typer):
    @app.command()
    def demo(seed: int = typer.Option(0, help="PRNG seed"),
             samples: int = typer.Option(1_000_000, help="samples for the empirical estimate")):
        """Random erf teacher, random students: exact population loss vs a sample estimate."""
        enable_x64()
        import jax
        import jax.numpy as jnp

        import earnshaw as es

        key = jax.random.key(seed)
        kt, ks, kx = jax.random.split(key, 3)
        teacher = es.random_teacher(kt, d=10, k=5, scale=10**-0.5)
        students = es.random_student(ks, d=10, k=5, scale=10**-0.5, batch=8)
        exact = es.population_loss("erf", students, teacher)
        x = jax.random.normal(kx, (samples, 10))
        table = Table(title=f"erf, d=10, k=5: exact population loss vs {samples:,}-sample estimate")
        for col in ("student", "exact (eq. 1)", "empirical", "std. error", "z"):
            table.add_column(col, justify="right")
        for i in range(8):
            s = es.Student(a=students.a[i], theta=students.theta[i])
            err = es.predict("erf", teacher.b, teacher.w, x) - es.predict("erf", s.a, s.theta, x)
            sq = err**2
            emp, se = float(jnp.mean(sq)), float(jnp.std(sq) / jnp.sqrt(samples))
            table.add_row(str(i), f"{float(exact[i]):.6f}", f"{emp:.6f}", f"{se:.1e}",
                          f"{(emp - float(exact[i])) / se:+.2f}")
        console.print(table)

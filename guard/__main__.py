"""`python -m guard` is the `guard` command."""

from guard.cli import app

app()

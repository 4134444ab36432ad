"""The ``ebprop`` command group and what every command shares: one-line errors, number format."""

from __future__ import annotations

import click

from .._version import __version__
from ..exceptions import EBPropError

__all__ = ["main", "pct"]

_EXPECTED_ERRORS = (EBPropError, OSError, ValueError, KeyError, FloatingPointError)


class _Main(click.Group):
    """A group that turns expected errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _EXPECTED_ERRORS as exc:
            if ctx.params.get("debug"):
                raise
            msg = str(exc) or type(exc).__name__
            if isinstance(exc, KeyError):
                msg = f"missing key {msg}"
            click.echo(f"error: {msg.splitlines()[0] if msg else msg}", err=True)
            ctx.exit(1)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ebprop")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """Train and use Expectation Backpropagation networks (binary or real weights)."""


def pct(x: float | None) -> str:
    """An error rate as a percentage, 5 wide; a dash for None."""
    return "   -  " if x is None else f"{100 * x:5.2f}%"

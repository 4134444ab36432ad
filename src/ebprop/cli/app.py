"""The ``ebprop`` command group and what every command shares: one-line errors and warnings,
the exit status of a diverged run, number format."""

from __future__ import annotations

import os
import re
import sys
import warnings

import click

from .._version import __version__
from ..exceptions import DivergenceWarning, EBPropError

__all__ = ["EXIT_DIVERGED", "EXIT_ERROR", "main", "pct"]

_EXPECTED_ERRORS = (EBPropError, OSError, ValueError, KeyError, FloatingPointError)

#: Exit status of a command that failed on bad input or a fault (click uses 2 for usage errors).
EXIT_ERROR = 1
#: Exit status of a training command that finished, files written, but whose update diverged.
EXIT_DIVERGED = 3


def _one_line(text: str) -> str:
    """A (possibly multi-line) message as one line: its lines joined, indentation dropped."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


class _Main(click.Group):
    """A group that turns expected errors into one line on stderr and exit status 1, prints
    warnings as one line each (no Python ``file:line`` text), and ends a command whose training
    diverged with exit status 3 and the fix."""

    def invoke(self, ctx: click.Context):
        debug = bool(ctx.params.get("debug"))
        diverged: list[str] = []

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            text = _one_line(str(message))
            if issubclass(category, DivergenceWarning):
                # one line per diverged run (its first epoch); the verdict comes at exit
                what = re.sub(r"epoch \d+: ", "", text, count=1)
                if what in diverged:
                    return
                diverged.append(what)
            if debug or issubclass(category, (DeprecationWarning, PendingDeprecationWarning)):
                # Python's format, with the file and line (deprecations are for developers,
                # and hidden by Python's default filters)
                python_format(message, category, filename, lineno, file, line)
            else:
                click.echo(f"warning: {text}", err=True)

        try:
            with warnings.catch_warnings():
                python_format = warnings.showwarning
                warnings.showwarning = show
                result = super().invoke(ctx)
        except BrokenPipeError:
            # the reader closed stdout (`ebprop info m.npz | head -1`): its choice, not an error
            _silence_stdout()
            ctx.exit(0)
        except _EXPECTED_ERRORS as exc:
            if debug:
                raise
            msg = str(exc) or type(exc).__name__
            if isinstance(exc, KeyError):
                msg = f"missing key {msg}"
            # the whole message: a list of folders searched or a fix on later lines stays
            click.echo(f"error: {msg}", err=True)
            ctx.exit(EXIT_ERROR)
        except MemoryError as exc:  # a size the machine cannot hold (layers, batch, dataset)
            if debug:
                raise
            click.echo(f"error: out of memory: {_one_line(str(exc))}", err=True)
            ctx.exit(EXIT_ERROR)
        if diverged:
            click.echo(
                "error: training diverged (parameters at the bound; the results above are "
                "unreliable). The run's files are kept. Retrain with a smaller --batch-size or "
                "wider --hidden layers (docs/cli.md, 'Divergence').",
                err=True,
            )
            ctx.exit(EXIT_DIVERGED)
        return result


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (a test runner's buffer)
        pass


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ebprop")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """Train and use Expectation Backpropagation networks (binary or real weights)."""


def pct(x: float | None) -> str:
    """An error rate as a percentage, 5 wide; a dash for None."""
    return "   -  " if x is None else f"{100 * x:5.2f}%"

"""The ``ebprop`` command line: a thin shell over the library. Parse, call the library, print;
nothing imports this package.

========================== ==========================================================
:mod:`.app`                the command group; one-line error handling (tracebacks only
                           with ``ebprop --debug``)
:mod:`.train`              ``ebprop train``
:mod:`.model`              ``ebprop evaluate``, ``predict``, ``info``
:mod:`.sweep`              ``ebprop sweep``, ``report``
:mod:`.export`             ``ebprop export``, ``bench-inference`` (from :mod:`ebprop.packed`)
========================== ==========================================================

Other commands plug in with ``main.add_command(cmd)``.
"""

from .app import main
from .export import DEPLOY_COMMANDS
from .model import evaluate, info, predict
from .sweep import report, sweep
from .train import train

for _command in (train, evaluate, predict, info, sweep, report, *DEPLOY_COMMANDS):
    main.add_command(_command)

__all__ = ["main"]

"""Deployment commands, ``ebprop export`` and ``ebprop bench-inference``, registered from
:mod:`ebprop.packed.commands` (where they are written)."""

from __future__ import annotations

from ..packed.commands import bench_inference, export

__all__ = ["DEPLOY_COMMANDS"]

DEPLOY_COMMANDS = (export, bench_inference)

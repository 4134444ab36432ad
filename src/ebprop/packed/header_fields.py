"""The ``.ebpb`` header fields added by format version 2, and the optional fields added since.

Version 2 adds ``class_names`` (one unique name per class; a version-1 file reads with
``str(label)``) and ``input`` (how the training images looked, or null:
:mod:`ebprop.datasets.appearance`). An optional field is one entry ``name: (default, check)`` in
:data:`OPTIONAL_FIELDS` (see :mod:`ebprop.packed.fileformat`).
"""

from __future__ import annotations

from typing import Any

from ..datasets.appearance import check_appearance
from ..exceptions import ModelFormatError

#: Optional header fields: name -> (default for files that lack it, check returning the value).
OPTIONAL_FIELDS: dict[str, tuple[Any, Any]] = {}
#: Fields a version-2 reader knows besides the required ones (anything else is refused).
_KNOWN = {"source", "input", "layers"}


def check_known(header: dict, required: tuple[str, ...], version: int, source: str) -> None:
    """Refuse a version-2 header holding fields this reader does not know."""
    unknown = set(header) - set(required) - _KNOWN - set(OPTIONAL_FIELDS)
    if version >= 2 and unknown:
        raise ModelFormatError(
            f"{source}: unknown header fields {sorted(unknown)} (written by a newer ebprop?)"
        )


def read_fields(header: dict, version: int, classes: list, source: str) -> tuple:
    """(class names, input appearance, optional fields) of a header; names are checked against
    the classes later, by ``check_names``."""
    names = header.get("class_names") if version >= 2 else [str(c) for c in classes]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelFormatError(f"{source}: class_names must be a list of strings, got {names!r}")
    try:
        appearance = check_appearance(header.get("input"))
        fields = {k: check(header.get(k, d)) for k, (d, check) in OPTIONAL_FIELDS.items()}
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{source}: {exc}") from exc
    return tuple(names), appearance, fields


def check_names(names: tuple, n_classes: int, source: str) -> None:
    """One distinct string per class."""
    if not (
        len(names) == n_classes
        and all(isinstance(n, str) for n in names)
        and len(set(names)) == n_classes
    ):
        raise ModelFormatError(
            f"{source}: class_names must list {n_classes} distinct strings, got {list(names)!r}"
        )

"""Exceptions raised by ebprop.

Every error a user can cause derives from :class:`EBPropError` and from the matching
built-in (``ValueError`` or ``OSError``) so that generic handlers keep working.
"""

from __future__ import annotations


class EBPropError(Exception):
    """Base class of every error ebprop raises on purpose."""


class DataError(EBPropError, ValueError):
    """A data file or array is malformed: wrong shape, truncated, corrupt, mislabelled."""


class ChecksumError(DataError):
    """A file's SHA-256 does not match its published checksum."""


class DataNotFoundError(EBPropError, FileNotFoundError):
    """A dataset's files are missing and cannot be downloaded."""


class ModelFormatError(EBPropError, ValueError):
    """A model or export file is corrupt, truncated, or of an unsupported format version."""


class DivergenceWarning(RuntimeWarning):
    """A training epoch drove parameters to the bound: the summed minibatch update diverged.

    Its own category, so that callers can turn it into an error
    (``warnings.simplefilter("error", DivergenceWarning)``) or, as the CLI does, into an exit
    status.
    """

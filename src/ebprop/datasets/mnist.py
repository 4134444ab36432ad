"""MNIST and Fashion-MNIST: locate, verify (and if needed download) and load the IDX files.

Each file is accepted when **either** the SHA-256/MD5 of the file as stored (the published .gz)
**or** that of its uncompressed content matches the published value. The content check is what
lets re-compressed copies (Debian's ``dataset-fashion-mnist``) and gunzipped files through. It
is done on the bytes already decompressed for parsing, so verification adds about 0.1 s per load
and needs no cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebprop.datasets.base import DATA_ENV, Dataset, default_cache_dir, resolve_validation
from ebprop.datasets.idx import decompress, idx_content, parse_idx
from ebprop.exceptions import ChecksumError, DataError, DataNotFoundError

__all__ = ["MNIST_FAMILY", "find_files", "load_mnist_family"]


@dataclass(frozen=True)
class _File:
    """One published file: canonical stem and its checksums as (algorithm, hex digest)."""

    stem: str  # canonical name without ".gz", e.g. "train-images-idx3-ubyte"
    gz: tuple[str, str]  # checksum of the published .gz bytes
    content: tuple[str, str]  # checksum of the uncompressed IDX content


@dataclass(frozen=True)
class _Source:
    title: str
    files: tuple[_File, _File, _File, _File]  # train images, train labels, test images, labels
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))


# MNIST: SHA-256 of the original LeCun .gz files and of their uncompressed content.
_MNIST = _Source(
    title="MNIST",
    files=(
        _File(
            "train-images-idx3-ubyte",
            ("sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            ("sha256", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        ),
        _File(
            "train-labels-idx1-ubyte",
            ("sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            ("sha256", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        ),
        _File(
            "t10k-images-idx3-ubyte",
            ("sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            ("sha256", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        ),
        _File(
            "t10k-labels-idx1-ubyte",
            ("sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
            ("sha256", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        ),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
)

# Fashion-MNIST: Zalando publishes only MD5s of the .gz files (zalandoresearch/fashion-mnist
# README; torchvision checks the same). The content MD5s are the ones public loaders cite for the
# gunzipped files; Debian's re-compressed package decompresses to exactly these.
_FASHION = _Source(
    title="Fashion-MNIST",
    files=(
        _File(
            "train-images-idx3-ubyte",
            ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("md5", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
        ),
        _File(
            "train-labels-idx1-ubyte",
            ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
            ("md5", "9018921c3c673c538a1fc5bad174d6f9"),
        ),
        _File(
            "t10k-images-idx3-ubyte",
            ("md5", "bef4ecab320f06d8554ea6380940ec79"),
            ("md5", "8181f5470baa50b63fa0f6fddb340f0a"),
        ),
        _File(
            "t10k-labels-idx1-ubyte",
            ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
            ("md5", "15d484375f8d13e6eb1aabb0c3f46965"),
        ),
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    # the label names of Zalando's README, by label 0..9
    class_names=(
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
)

#: The MNIST-family datasets this module loads, by name.
MNIST_FAMILY: dict[str, _Source] = {"mnist": _MNIST, "fashion-mnist": _FASHION}

_N_CLASSES = 10
_DEFAULT_VALIDATION = 10_000
_TIMEOUT_S = 20.0
_MAX_DOWNLOAD = 64 << 20  # bytes; the largest published file (Fashion-MNIST train images) is 26 MB


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` into the path ``dest``, at most ``_MAX_DOWNLOAD`` bytes.

    Raises
    ------
    OSError
        On network errors, or when the server sends more than ``_MAX_DOWNLOAD`` bytes (the
        published files are at most 26 MB; a larger answer is not one of them).
    """
    request = urllib.request.Request(url, headers={"User-Agent": "ebprop"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, dest.open("wb") as out:
        total = 0
        while chunk := response.read(1 << 20):
            total += len(chunk)
            if total > _MAX_DOWNLOAD:
                raise OSError(f"{url} sent more than {_MAX_DOWNLOAD} bytes; not a dataset file")
            out.write(chunk)


def _candidate_dirs(name: str, data_dir: str | os.PathLike | None) -> list[Path]:
    """Folders searched, in order: per-dataset subfolder, then the root itself (flat layout)."""
    if data_dir is not None:
        roots = [Path(data_dir).expanduser()]
    else:
        roots = [Path(p).expanduser() for p in [os.environ.get(DATA_ENV)] if p]
        roots.append(default_cache_dir())
    subdirs = [name, name.replace("-", "_")]
    dirs = [root / sub for root in roots for sub in dict.fromkeys(subdirs)] + roots
    if data_dir is None:
        dirs += [Path(p) for p in MNIST_FAMILY[name].system_dirs]
    return list(dict.fromkeys(dirs))


def _download_dir(name: str, data_dir: str | os.PathLike | None) -> Path:
    """Where missing files are downloaded: ``<data_dir>/<name>``, else the user cache."""
    root = Path(data_dir).expanduser() if data_dir is not None else default_cache_dir()
    return root / name


def find_files(
    name: str, data_dir: str | os.PathLike | None = None
) -> tuple[dict[str, Path], list[Path]]:
    """Locate a dataset's four files.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
        The dataset.
    data_dir : str, PathLike or None
        The folder holding the files, or a parent holding one folder per dataset. ``None``
        searches ``$EBPROP_DATA``, then the user cache (and, for Fashion-MNIST, Debian's
        ``/usr/share/datasets/fashion-mnist``).

    Returns
    -------
    found : dict of str to Path
        Canonical stem -> file found (``.gz`` preferred over the uncompressed name).
    searched : list of Path
        The folders searched, in order.
    """
    searched = _candidate_dirs(name, data_dir)
    found: dict[str, Path] = {}
    for spec in MNIST_FAMILY[name].files:
        for folder in searched:
            hits = [folder / (spec.stem + ".gz"), folder / spec.stem]
            hit = next((p for p in hits if p.is_file()), None)
            if hit is not None:
                found[spec.stem] = hit
                break
    return found, searched


def _digest(algorithm: str, data: bytes) -> str:
    return hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()


def _identify(content_sha256: str) -> str | None:
    """Name the published file whose content has this SHA-256, when it is MNIST's."""
    for spec in _MNIST.files:
        if spec.content == ("sha256", content_sha256):
            return f"MNIST's {spec.stem}"
    return None


def _verify(source: _Source, spec: _File, raw: bytes, content: bytes, path: Path) -> None:
    """Accept the file when its stored bytes or its content match the published checksum.

    Raises
    ------
    ChecksumError
        Naming the file, the expected checksums and the actual ones.
    """
    algo, expected = spec.content
    actual = _digest(algo, content)
    if actual == expected:
        return
    gz_algo, gz_expected = spec.gz
    gz_actual = _digest(gz_algo, raw)
    if gz_actual == gz_expected:
        return
    hint = ""
    other = _identify(_digest("sha256", content))
    if other is not None and source is not _MNIST:
        hint = f" It is {other}: this folder holds another dataset."
    raise ChecksumError(
        f"{path}: does not match the published {source.title} checksum of {spec.stem}: "
        f"expected content {algo} {expected} (or file {gz_algo} {gz_expected}), got content "
        f"{algo} {actual} (file {gz_algo} {gz_actual}).{hint} Delete the file and fetch it again."
    )


def _download(source: _Source, spec: _File, folder: Path) -> Path:
    """Fetch one file from the first mirror that serves it intact; atomic, no partial file.

    Raises
    ------
    ChecksumError
        If every mirror that answered served a file that fails verification.
    OSError
        If no mirror could be reached (the last error).
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / (spec.stem + ".gz")
    errors: list[Exception] = []
    for mirror in source.mirrors:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.stem}.", suffix=".part", dir=folder)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _fetch(mirror + dest.name, tmp)
            raw = tmp.read_bytes()
            _verify(source, spec, raw, decompress(raw, f"{mirror}{dest.name}"), dest)
            os.replace(tmp, dest)
            return dest
        except (OSError, DataError) as exc:  # URLError and timeouts are OSErrors
            errors.append(exc)
        finally:
            tmp.unlink(missing_ok=True)
    checksum_errors = [e for e in errors if isinstance(e, DataError)]
    raise checksum_errors[-1] if checksum_errors else errors[-1]


def _missing_message(
    source: _Source, missing: Sequence[str], searched: Sequence[Path], reason: str
) -> str:
    folders = "\n".join(f"  {p}" for p in searched)
    names = ", ".join(f"{m}.gz" for m in missing)
    return (
        f"{source.title}: missing {names} ({reason}).\nSearched:\n{folders}\n"
        f"Put the files (gzipped or not) in one of these folders, e.g. <DIR>/{searched[0].name}/, "
        f"and pass data_dir=<DIR> (--data-dir) or set {DATA_ENV}=<DIR>. "
        f"Mirrors: {', '.join(source.mirrors)}"
    )


def _check_pair(images: np.ndarray, labels: np.ndarray, img_path: Path, lbl_path: Path) -> None:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{img_path}: expected uint8 images (n, h, w), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(
            f"{lbl_path}: expected uint8 labels of shape (n,), got {labels.dtype} {labels.shape}"
        )
    if len(labels) != len(images):
        raise DataError(
            f"{lbl_path}: {len(labels)} labels for {len(images)} images in {img_path}; "
            "the two files do not belong together"
        )
    if labels.size and int(labels.max()) >= _N_CLASSES:
        bad = np.flatnonzero(labels >= _N_CLASSES)
        raise DataError(
            f"{lbl_path}: {bad.size} labels outside 0..{_N_CLASSES - 1} "
            f"(first at index {bad[0]}: {labels[bad[0]]})"
        )


def load_mnist_family(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    validation: int | float | None = None,
    download: bool = True,
) -> Dataset:
    """Load MNIST or Fashion-MNIST, downloading missing files when allowed.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
        The dataset.
    data_dir : str, PathLike or None
        See :func:`find_files`. Missing files are downloaded into ``<data_dir>/<name>/``, or into
        ``<user cache>/<name>/`` when ``data_dir`` is None.
    validation : int, float or None
        Number (int) or fraction (float) of training images held out as the validation split,
        taken from the **end** of the official training set (deterministic). Default 10,000;
        0 for none.
    download : bool
        Whether to fetch missing files from the public mirrors.

    Returns
    -------
    Dataset
        uint8 images (n, 28, 28), max_value 255; 50,000/10,000/10,000 by default.

    Raises
    ------
    DataNotFoundError
        If files are missing and cannot be downloaded; says which and where to put them.
    ChecksumError
        If a file does not match its published checksum.
    DataError
        If a file is truncated, corrupt or inconsistent.
    """
    if name not in MNIST_FAMILY:
        raise ValueError(f"unknown dataset {name!r}; MNIST-family names: {sorted(MNIST_FAMILY)}")
    source = MNIST_FAMILY[name]
    found, searched = find_files(name, data_dir)
    missing = [spec for spec in source.files if spec.stem not in found]
    if missing and not download:
        raise DataNotFoundError(
            _missing_message(source, [m.stem for m in missing], searched, "download=False")
        )
    target = _download_dir(name, data_dir)
    for spec in missing:
        try:
            found[spec.stem] = _download(source, spec, target)
        except OSError as exc:
            still = [m.stem for m in missing if m.stem not in found]
            raise DataNotFoundError(
                _missing_message(source, still, searched, f"download failed: {exc}")
            ) from exc

    arrays: list[np.ndarray] = []
    checksums: dict[str, str] = {}
    for spec in source.files:
        path = found[spec.stem]
        raw = path.read_bytes()
        content = idx_content(raw, str(path))
        # parse before verifying so a malformed file gets the more specific message
        array = parse_idx(content, str(path))
        _verify(source, spec, raw, content, path)
        checksums[spec.stem] = _digest("sha256", content)
        arrays.append(array)
    X_tr, y_tr, X_te, y_te = arrays
    names = [found[s.stem] for s in source.files]
    _check_pair(X_tr, y_tr, names[0], names[1])
    _check_pair(X_te, y_te, names[2], names[3])

    n_val = resolve_validation(validation, len(y_tr), _DEFAULT_VALIDATION)
    n_fit = len(y_tr) - n_val
    return Dataset(
        name=name,
        X_train=X_tr[:n_fit],
        y_train=y_tr[:n_fit].astype(np.int64),
        X_val=X_tr[n_fit:],
        y_val=y_tr[n_fit:].astype(np.int64),
        X_test=X_te,
        y_test=y_te.astype(np.int64),
        max_value=255,
        classes=np.arange(_N_CLASSES, dtype=np.int64),
        checksums=checksums,
        class_names=source.class_names,
    )

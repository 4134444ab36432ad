"""Issue 11: bad input and faults end in one line naming the file or field, never a traceback
or a silent wrong result, and nothing already saved is lost."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import types
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import mnist_dir, requires_mnist

from ebprop.cli import main
from ebprop.exceptions import DataError, ModelFormatError
from ebprop.fileio import atomic_write_bytes, read_npy, read_npz
from ebprop.inputs import model_data_dir, model_split
from ebprop.persist import load_model
from ebprop.runs.folder import RunFolder
from ebprop.sweep import parse_experiment, run_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train", "--hidden", "16", "--epochs", "1", "-q"]


def _cli(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "good"
    r = _cli(*TINY, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def _assert_one_line_error(r, *needles: str) -> str:
    assert r.exit_code == 1, r.output
    assert (
        "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    )
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, r.output
    for needle in needles:
        assert needle in lines[0], r.output
    return lines[0]


# ---------------------------------------------------------------------------- item 3: divergence
@pytest.mark.parametrize("hidden", ["8", "none"])
def test_divergence_is_one_line_then_exit_3_keeping_the_files(tmp_path, hidden, old_update):
    # old_update: without the overshoot control these settings diverge (its last resort)
    out = tmp_path / "run"
    r = _cli("train", "--hidden", hidden, "--epochs", "2", "--batch-size", "10", "-q", "--out", out)
    assert r.exit_code == 3, r.output
    warns = [ln for ln in r.output.splitlines() if ln.startswith("warning: ")]
    assert len(warns) == 1 and "diverged" in warns[0] and "batch size" in warns[0]
    assert ".py:" not in r.output and "RuntimeWarning" not in r.output  # no Python warning format
    assert "--batch-size" in r.output and "wider --hidden" in r.output  # the fix is named
    assert (out / "model.npz").is_file() and (out / "summary.json").is_file()


def test_a_stable_small_batch_exits_0(tmp_path):
    r = _cli(
        *TINY[:1], "--hidden", "8", "--epochs", "1", "--batch-size", "1", "-q", "--out", tmp_path
    )
    assert r.exit_code == 0 and "warning" not in r.output, r.output


def test_sweep_reports_a_diverged_run(tmp_path, old_update):
    exp = parse_experiment(
        'name = "d"\n[settings]\ndataset = "digits"\nepochs = 1\nbatch_size = 10\n'
        "[[grid]]\nhidden = [8]\nseed = [0]\n"
    )
    with pytest.warns(RuntimeWarning, match="run ebp-binary-h8.*diverged"):
        result = run_sweep(exp, tmp_path, progress=False)
    assert "diverged" in result.outcomes[0]["warning"]


# ---------------------------------------------------------------------------- item 6: sizes
def _npz_bytes(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def test_npy_header_declaring_a_huge_array_is_refused_before_allocating(tmp_path):
    # 8 TiB declared in a file of a few hundred bytes
    path = tmp_path / "model.npz"
    path.write_bytes(_npz_bytes({"coef_0.npy": _npy_header((2**40,)) + b"\0" * 64}))
    with pytest.raises(ModelFormatError, match=r"declares shape \(1099511627776,\)"):
        load_model(path)


def test_zip_bomb_member_is_refused(tmp_path):
    path = tmp_path / "model.npz"
    data = _npy_header((2**20,)) + bytes(8 * 2**20)  # 8 MiB of zeros deflate to ~8 KiB
    path.write_bytes(_npz_bytes({"coef_0.npy": data}, zipfile.ZIP_DEFLATED))
    assert path.stat().st_size < 100_000
    with pytest.raises(ModelFormatError, match="zip bomb"):
        load_model(path)


def test_declared_total_over_the_limit_is_refused(good_run, monkeypatch):
    monkeypatch.setenv("EBPROP_MAX_ARCHIVE_BYTES", "1000")
    with pytest.raises(ModelFormatError, match="over the limit of 1,000"):
        load_model(good_run / "model.npz")
    r = _cli("info", good_run / "model.npz")
    _assert_one_line_error(r, "model.npz", "EBPROP_MAX_ARCHIVE_BYTES")


def test_checkpoint_with_a_huge_declared_array_is_refused(tmp_path):
    folder = RunFolder(tmp_path)
    folder.checkpoint_path.write_bytes(
        _npz_bytes({"state.npy": _npy_header((2**20, 2**20)) + b"\0" * 8})
    )
    with pytest.raises(ModelFormatError, match="checkpoint.npz.*declares shape"):
        folder.read_checkpoint("state")


def test_read_npz_reads_what_it_checks(tmp_path):
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.array(["x", "yz"])}
    np.savez(tmp_path / "f.npz", **arrays)
    got = read_npz(tmp_path / "f.npz")
    assert got.keys() == arrays.keys()
    assert all(np.array_equal(got[k], arrays[k]) for k in arrays)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"garbage", "not a .npy file"),
        (_npy_header((2**40,)) + b"\0" * 64, r"declares shape \(1099511627776,\)"),
        (_npy_header((4, 4)) + b"\0" * 40, "holds 40 bytes"),  # truncated
        (_npy_header((3,), "|O") + b"\x80\x04N.", "Python objects"),
    ],
)
def test_read_npy_checks_before_loading(tmp_path, content, message):
    path = tmp_path / "x.npy"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_npy(path)
    assert str(path) in str(info.value)


def test_read_npy_limit_and_good_file(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(read_npy(tmp_path / "x.npy"), np.arange(12.0).reshape(3, 4))
    monkeypatch.setenv("EBPROP_MAX_ARCHIVE_BYTES", "50")
    with pytest.raises(DataError, match="over the limit of 50"):
        read_npy(tmp_path / "x.npy")


def test_predict_on_an_object_npy_names_the_file(good_run, tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([1, "a"], dtype=object), allow_pickle=True)
    r = _cli("predict", good_run / "model.npz", path)
    _assert_one_line_error(r, "objects.npy", "Python objects")


# ---------------------------------------------------------------------------- item 8: orphans
def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_a_parallel_sweep_leaves_no_worker_training(tmp_path, sig):
    toml = tmp_path / "e.toml"
    toml.write_text(
        'name = "o"\n[settings]\ndataset = "digits"\nepochs = 400\nbatch_size = 1\n'
        "[[grid]]\nhidden = [64]\nseed = [0, 1]\n"
    )
    out = tmp_path / "out"
    code = (
        "from ebprop.sweep import load_experiment, run_sweep; "
        f"run_sweep(load_experiment({str(toml)!r}), {str(out)!r}, jobs=2, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*/options.json"))) < 2:  # both workers are training
            assert proc.poll() is None and time.monotonic() < deadline, "sweep did not start"
            time.sleep(0.2)
        workers = _descendants(proc.pid)
        assert len(workers) >= 2
        os.kill(proc.pid, sig)
        proc.wait()
        deadline = time.monotonic() + 15
        while any(map(_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [w for w in workers if _running(w)]
    finally:
        if proc.poll() is None:
            proc.kill()
    for w in left:
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} still running after the sweep's process was killed"
    # a worker stopped at a minibatch boundary with its checkpoint written: the sweep resumes
    assert all((d / "checkpoint.npz").is_file() for d in out.glob("ebp-*"))


# ---------------------------------------------------------------------------- item 9: errors
def test_missing_data_error_keeps_the_folders_searched(tmp_path, monkeypatch, good_run):
    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.delenv("EBPROP_DATA", raising=False)
    r = _cli("evaluate", good_run / "model.npz", "--dataset", "mnist", "--data-dir", tmp_path)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "Searched:" in r.output and str(tmp_path / "mnist") in r.output, r.output


@pytest.mark.parametrize("content", ["{bad", "[]", '{"hidden": "x"}'])
def test_corrupt_options_json_is_named(tmp_path, good_run, content):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / "options.json").write_text(content)
    r = _cli("train", "--resume", run, "--epochs", "2", "-q")
    _assert_one_line_error(r, str(run / "options.json"))


@pytest.mark.parametrize(
    "content", ["{bad", "[1, 2]", '{"options": 3}', '{"options": {}}', '{"options": {}, "x": 1}']
)
def test_report_on_a_malformed_summary_is_one_line(tmp_path, good_run, content):
    import shutil

    sweep = tmp_path / "sweep"
    shutil.copytree(good_run, sweep / "run")
    (sweep / "run" / "summary.json").write_text(content)
    r = _cli("report", sweep, "--out", tmp_path / "rep")
    _assert_one_line_error(r, str(sweep / "run" / "summary.json"))
    assert not (tmp_path / "rep").exists()


def test_corrupt_summary_of_a_finished_run_is_named_on_resume(tmp_path, good_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    (run / "summary.json").write_text("[]")
    _assert_one_line_error(_cli("train", "--resume", run, "-q"), str(run / "summary.json"))


def test_huge_init_variance_is_one_line_and_writes_nothing(tmp_path):
    r = _cli(*TINY, "--init-variance", "1e308", "--out", tmp_path / "run")
    _assert_one_line_error(r, "init_variance=1e+308")
    assert not (tmp_path / "run").exists()


def test_unwritable_target_is_named_not_its_temporary_file(tmp_path):
    target = tmp_path / "missing" / "model.npz"
    with pytest.raises(FileNotFoundError, match="missing/model.npz: cannot write") as err:
        atomic_write_bytes(target, b"x")
    assert ".tmp" not in str(err.value)


# ---------------------------------------------------------------------------- item 10: data dir
def _model(data_dir: str | None) -> types.SimpleNamespace:
    opts = {"dataset": "mnist", "data_dir": data_dir, "validation": 0, "seed": 0}
    return types.SimpleNamespace(
        metadata={"training_options": opts, "checksums": {}}, preprocessor=None
    )


def test_model_data_dir_order(tmp_path):
    here = str(tmp_path)
    gone = str(tmp_path / "gone")
    assert model_data_dir(_model(gone), "/given") == "/given"  # --data-dir first
    assert model_data_dir(_model(here)) == here  # the recorded folder while it exists
    assert model_data_dir(_model(gone)) is None  # then $EBPROP_DATA, then the cache
    assert model_data_dir(_model(None)) is None


@requires_mnist
def test_a_vanished_recorded_folder_falls_back_to_ebprop_data(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setenv("EBPROP_DATA", str(mnist_dir()))
    X, y, name, _ = model_split(_model(str(tmp_path / "gone")), "test")
    assert name == "mnist" and X.shape == (10_000, 28, 28) and len(y) == 10_000


def test_divergence_exits_3_with_debug_too(tmp_path, old_update):
    r = _cli("--debug", "train", "--hidden", "8", "--epochs", "1", "-q", "--out", tmp_path / "r")
    assert r.exit_code == 3, r.output


# ---------------------------------------------------------------------------- issue 33
FIXTURES = ROOT / "tests" / "fixtures"


def _ink_folder(root: Path, n: int = 20) -> Path:
    """Three classes of dark-ink-on-white 8x8 PNGs (tests/fixtures/make_ink_folder.py)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for kind in ("bar", "dash", "ring"):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            a = np.full((8, 8), 255, np.uint8)
            if kind == "bar":
                a[1:7, 3:5] = 0
            elif kind == "dash":
                a[3:5, 1:7] = 0
            else:
                a[1:7, 1:7] = 0
                a[2:6, 2:6] = 255
            noise = rng.integers(0, 40, (8, 8))
            a = np.clip(a.astype(int) + np.where(a == 0, noise, -noise), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(root / kind / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def ink_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("ink")
    data = _ink_folder(base / "ink")
    out = base / "run"
    r = _cli("train", "--dataset", data, "--hidden", "16", "--epochs", "15", "--batch-size", "5",
             "--out", out, "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    return out


def test_version_1_files_still_load():
    from ebprop.packed import PackedNetwork

    old = load_model(FIXTURES / "v1_model.npz")
    assert old.metadata["format_version"] == 1 and old.metadata["input"] is None
    assert old.class_names == ("bar", "dash", "ring")
    net = PackedNetwork.load(FIXTURES / "v1_model.ebpb")
    assert net.model.names == ("0", "1", "2") and net.model.input is None
    r = _cli("info", FIXTURES / "v1_model.npz")
    assert r.exit_code == 0 and "not recorded" in r.output, r.output


def test_v2_model_records_class_names_and_input_appearance(ink_run):
    from ebprop.persist import FORMAT_VERSION

    meta = load_model(ink_run / "model.npz").metadata
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert meta["class_names"] == ["bar", "dash", "ring"]
    app = meta["input"]
    assert app["polarity"] == "dark_on_light" and app["image_shape"] == [8, 8]
    assert app["max_value"] == 255 and app["background"] == [255, 255, 255]
    assert 0.6 < app["mean_intensity"] < 0.85  # mostly white page: an independent estimate
    r = _cli("info", ink_run)
    assert "trained on: dark on light" in r.output, r.output


def test_export_keeps_class_names_in_ebpb_c_and_cortex_m(ink_run, tmp_path):
    from ebprop.packed import PackedNetwork

    assert _cli("export", ink_run / "model.npz", "-o", tmp_path / "m.ebpb").exit_code == 0
    net = PackedNetwork.load(tmp_path / "m.ebpb")
    assert net.model.names == ("bar", "dash", "ring")
    assert net.model.input["polarity"] == "dark_on_light"
    r = _cli("info", tmp_path / "m.ebpb")
    assert "3 classes: bar, dash, ring" in r.output, r.output
    for target in ("host", "cortex-m4"):
        out = tmp_path / target
        r = _cli("export", ink_run / "model.npz", "--format", "c", "--target", target, "-o", out)
        assert r.exit_code == 0, r.output
        c = (out / "model.c").read_text()
        assert 'ebprop_labels[EBPROP_N_CLASSES] = {"bar", "dash", "ring"}' in c
        assert "#define EBPROP_INPUT_DARK_ON_LIGHT 1" in (out / "model.h").read_text()


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_export_refuses_to_overwrite_its_input(ink_run, tmp_path):
    import shutil

    model = tmp_path / "model.npz"
    shutil.copy(ink_run / "model.npz", model)
    before = model.read_bytes()
    _assert_one_line_error(_cli("export", model, "-o", model), "is the input model")
    _assert_one_line_error(_cli("export", model, "-o", tmp_path / "." / "model.npz"), "input")
    folder_model = tmp_path / "c" / "model.c"
    folder_model.parent.mkdir()
    shutil.copy(model, folder_model)
    r = _cli("export", folder_model, "--format", "c", "-o", folder_model.parent)
    _assert_one_line_error(r, "is the input model")
    assert model.read_bytes() == before and folder_model.read_bytes() == before
    load_model(model)  # still the trained model


def test_train_out_refuses_foreign_folders_and_the_empty_path(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("model.npz", "summary.json", "metrics.jsonl"):
        (mine / name).write_text(f"the user's {name}")
    r = _cli(*TINY, "--out", mine)
    _assert_one_line_error(r, str(mine), "not an ebprop run")
    for name in ("model.npz", "summary.json", "metrics.jsonl"):
        assert (mine / name).read_text() == f"the user's {name}"
    assert sorted(p.name for p in mine.iterdir()) == ["metrics.jsonl", "model.npz", "summary.json"]
    here = Path.cwd()
    before = sorted(p.name for p in here.iterdir())
    r = _cli(*TINY, "--out", "")
    assert r.exit_code == 2 and "--out" in r.output and "empty path" in r.output, r.output
    assert sorted(p.name for p in here.iterdir()) == before
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is fine, and so is a new one
    assert _cli(*TINY, "--out", empty).exit_code == 0


def test_a_second_training_into_a_busy_folder_is_refused_and_kill_9_frees_it(tmp_path):
    out = tmp_path / "run"
    slow = [sys.executable, "-m", "ebprop", "train", "--hidden", "400,400", "--epochs", "50",
            "-q", "--checkpoint-every", "0.5", "--out", str(out)]  # fmt: skip
    first = subprocess.Popen(slow, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (out / "options.json").exists():
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = _cli(*TINY, "--out", out)
        _assert_one_line_error(r, str(out), f"in use by PID {first.pid}")
        r = _cli("train", "--resume", out, "-q")
        _assert_one_line_error(r, f"in use by PID {first.pid}")
    finally:
        first.kill()  # SIGKILL: the OS releases the lock
        first.wait()
    r = _cli("train", "--resume", out, "--epochs", "1", "-q")
    assert r.exit_code == 0 and "in use" not in r.output, r.output


def test_info_into_a_closed_pipe_exits_0_quietly(ink_run):
    read, write = os.pipe()
    os.close(read)  # the reader is gone before ebprop writes its first line
    try:
        p = subprocess.run(
            [sys.executable, "-m", "ebprop", "info", str(ink_run / "model.npz")],
            env=_env(),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_predict_reads_a_dark_on_light_models_own_images_as_trained(ink_run):
    data = ink_run.parent / "ink"
    files = sorted(data.glob("*/*.png"))
    r = _cli("predict", ink_run, "--json", *files)
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.output.splitlines() if not ln.startswith(("note:", "warning:"))]
    import json

    got = json.loads("\n".join(rows))
    truth = [f.parent.name for f in files]
    right = sum(row["name"] == t for row, t in zip(got, truth, strict=True))
    assert right >= 0.9 * len(files), (right, len(files))  # evaluate agrees: 0 % test error
    assert "warning" not in r.output and "note" not in r.output


def test_predict_warns_on_the_other_polarity_and_notes_old_models(ink_run, tmp_path):
    from PIL import Image

    own = ink_run.parent / "ink" / "bar" / "0.png"
    light = tmp_path / "light_on_dark.png"
    Image.fromarray(255 - np.asarray(Image.open(own))).save(light)
    r = _cli("predict", ink_run, "--invert", "no", light)
    assert r.exit_code == 0 and "warning: " + str(light) + ": looks light on dark" in r.output
    r = _cli("predict", ink_run, own)  # auto: its own kind of image is never inverted
    assert r.exit_code == 0 and "class bar" in r.output and "warning" not in r.output, r.output
    r = _cli("predict", FIXTURES / "v1_model.npz", FIXTURES / "v1_bar.png")
    assert r.exit_code == 0 and r.output.count("note: ") == 1, r.output
    assert "before model format 2" in r.output
    # today's behaviour for a version-1 model: auto inverts the light-bordered image
    assert "class ring" in r.output, r.output


def test_auto_inverts_towards_the_recorded_polarity_only():
    from ebprop.datasets.appearance import describe_images
    from ebprop.inputs import apply_appearance

    ink = np.full((1, 8, 8), 255.0)
    ink[0, 2:6, 3:5] = 0  # dark ink on light
    dark_model = describe_images(ink, 255)
    light_model = describe_images(255 - ink, 255)
    assert dark_model["polarity"] == "dark_on_light" and light_model["polarity"] == "light_on_dark"
    np.testing.assert_array_equal(apply_appearance(ink[0], 255, "auto", dark_model, "x"), ink[0])
    np.testing.assert_array_equal(
        apply_appearance(ink[0], 255, "auto", light_model, "x"), 255 - ink[0]
    )
    bright = np.zeros((8, 8))
    bright[1:7, 1:7] = 255  # light on dark, as trained, but 0.56 of full scale, not 0.12
    with pytest.warns(UserWarning, match="bright.png: mean intensity 0.56 is far"):
        apply_appearance(bright, 255, "no", light_model, "bright.png")


def _expected_bytes(sizes, batch, itemsize=4, n=0):
    # independent of network_bytes: 6 weight-sized and 12 unit-sized arrays per sample
    w = sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))
    return itemsize * (6 * w + 12 * batch * sum(sizes) + n * sizes[0])


@pytest.mark.parametrize(
    ("args", "sizes", "batch"),
    [
        (["--hidden", "10000000"], [64, 10_000_000, 10], 10),
        (["--hidden", "100", "--batch-size", "1000000000"], [64, 100, 10], 10**9),
        (["--dataset", "mnist", "--hidden", "100000,100000"], [784, 100_000, 100_000, 10], 10),
    ],
)
def test_sizes_past_the_memory_budget_are_refused_before_allocating(tmp_path, args, sizes, batch):
    from ebprop.memory import memory_budget

    n = {64: 1797, 784: 70000}[sizes[0]]
    need = _expected_bytes(sizes, batch, n=n)
    assert need > memory_budget(None)  # the default budget: 80 % of this machine's memory
    r = _cli("train", *args, "--epochs", "1", "-q", "--out", tmp_path / "run")
    assert r.exit_code == 2 and f"({need:,} bytes)" in r.output and "max_memory" in r.output
    assert not (tmp_path / "run").exists()


def test_max_memory_option_in_train_sweep_and_the_estimator(tmp_path):
    from ebprop import EBPClassifier

    need = _expected_bytes([64, 100, 10], 10, n=1797)
    r = _cli(*TINY[:1], "--hidden", "100", "--max-memory", str(need - 1), "--out", tmp_path / "a")
    assert r.exit_code == 2 and f"{need:,} bytes" in r.output, r.output
    assert _cli(*TINY, "--max-memory", "1G", "--out", tmp_path / "b").exit_code == 0
    toml = tmp_path / "huge.toml"
    toml.write_text('name = "huge"\n[settings]\nepochs = 1\n[[grid]]\nhidden = [[10000000]]\n')
    r = _cli("sweep", toml, "--dry-run", "--out", tmp_path / "sw")
    assert r.exit_code != 0 and "bytes" in r.output and "max_memory" in r.output, r.output
    X = np.random.default_rng(0).random((30, 64))
    y = np.arange(30) % 3
    with pytest.raises(ValueError, match=r"64-10000000-3 network .* max_memory"):
        EBPClassifier(hidden_layer_sizes=(10_000_000,)).fit(X, y)
    with pytest.raises(ValueError, match=r"max_memory of 0.0 GiB \(1,000 bytes\)"):
        EBPClassifier(hidden_layer_sizes=(50,), max_memory=1000).fit(X, y)
    with pytest.raises(ValueError, match="max_memory must be a size"):
        EBPClassifier(max_memory="lots").fit(X, y)


def test_sigterm_stops_a_training_within_seconds(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ebprop", "train", "--hidden", "1000,1000", "--epochs", "50",
           "--out", str(out), "-q"]  # fmt: skip
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (out / "options.json").exists():
            assert p.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1)
        sent = time.monotonic()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        assert time.monotonic() - sent < 25  # STOP_GRACE_S (20 s) at the very worst
    finally:
        p.kill()
        p.wait()
    assert p.returncode in (130, 1), p.stderr.read()


@pytest.mark.parametrize(
    ("scale", "max_value"), [(1e39, None), (1e-46, 1e-46)], ids=["beyond_float32", "tiny_max"]
)
def test_features_beyond_float32_are_refused_before_writing(tmp_path, scale, max_value):
    rng = np.random.default_rng(0)
    if max_value is None:
        X = rng.normal(size=(200, 5))
        X[:, 0] *= scale
        np.savez(tmp_path / "d.npz", X_train=X, y_train=(X[:, 1] > 0).astype(int))
    else:
        X = rng.random((200, 8, 8)) * scale
        np.savez(
            tmp_path / "d.npz", X_train=X, y_train=rng.integers(0, 2, 200), max_value=max_value
        )
    r = _cli("train", "--dataset", tmp_path / "d.npz", "--hidden", "8", "--epochs", "1", "-q",
             "--out", tmp_path / "run")  # fmt: skip
    line = _assert_one_line_error(r, str(tmp_path / "d.npz"), "NaN or infinite in float32")
    assert "binary weights" not in line and "checkpoint" not in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("weights", ["binary", "real"])
def test_a_nan_epoch_names_the_weights_kind_it_is(weights):
    from ebprop import EBPClassifier

    X = np.random.default_rng(0).random((40, 6))
    y = np.arange(40) % 2
    est = EBPClassifier(hidden_layer_sizes=(4,), weights=weights).init_parameters(6, [0, 1])
    est.coefs_[0][0, 0] = np.nan
    trainer = est.trainer()
    with pytest.raises(FloatingPointError, match=f"the {weights}-weight network") as err:
        trainer.train_epoch(X, est.coding.targets(y, trainer.net.dtype), check_finite=True)
    wrong = "binary weights" if weights == "binary" else "inputs scaled"
    assert wrong not in str(err.value)


def test_a_first_epoch_nan_leaves_a_folder_the_corrected_command_reuses(tmp_path, monkeypatch):
    from ebprop.trainer import Trainer

    real_epoch = Trainer.train_epoch

    def nan_epoch(self, *args, **kwargs):
        raise FloatingPointError("training diverged in epoch 1: the binary-weight network's …")

    out = tmp_path / "run"
    monkeypatch.setattr(Trainer, "train_epoch", nan_epoch)
    line = _assert_one_line_error(_cli(*TINY, "--out", out), "nothing was kept", str(out))
    assert "checkpoint" not in line
    assert not (out / "options.json").exists()
    monkeypatch.setattr(Trainer, "train_epoch", real_epoch)
    r = _cli(*TINY, "--batch-size", "5", "--out", out)  # the corrected command, same --out
    assert r.exit_code == 0, r.output


def test_settings_that_cannot_learn_are_warned(tmp_path):
    from PIL import Image

    r = _cli(*TINY, "--batch-size", "5000", "--out", tmp_path / "a")
    assert "warning: batch_size 5000 is larger than the 958 training samples" in r.output
    r = _cli(*TINY, "--augment-shift", "4", "--out", tmp_path / "b")
    assert "warning: augment_shift 4 is at least half the 8x8 images" in r.output, r.output
    data = tmp_path / "rgba"
    for k, cls in enumerate(("o", "x")):
        (data / cls).mkdir(parents=True)
        for i in range(12):
            a = np.zeros((8, 8, 4), np.uint8)  # transparent page
            a[2:6, 2 + k : 4 + k] = (0, 0, 0, 255)  # opaque black ink
            Image.fromarray(a, "RGBA").save(data / cls / f"{i}.png")
        Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(data / cls / "empty.png")
    r = _cli("train", "--dataset", data, "--hidden", "8", "--epochs", "1", "-q",
             "--out", tmp_path / "c")  # fmt: skip
    assert r.exit_code == 0, r.output
    import re

    blank = re.search(r"warning: dataset \S+: (\d) of (\d+) training images load blank", r.output)
    assert blank and 1 <= int(blank[1]) <= 2 and int(blank[2]) < 26, r.output
    app = load_model(tmp_path / "c" / "model.npz").metadata["input"]
    assert app["polarity"] == "dark_on_light"  # composited on white, not read as all black
    r = _cli("train", "--dataset", data, "--background", "black", "--hidden", "8",
             "--epochs", "1", "-q", "--out", tmp_path / "d")  # fmt: skip
    meta = load_model(tmp_path / "d" / "model.npz").metadata["input"]
    assert meta["background"] == [0, 0, 0] and meta["mean_intensity"] == 0.0
    r = _cli(*TINY, "--background", "mauve", "--out", tmp_path / "e")
    assert r.exit_code == 2 and "background: 'mauve' is not a colour" in r.output


def _crafted(tmp_path, ink_run, edit) -> Path:
    """A copy of the ink model whose header ``edit(header)`` changed (arrays untouched)."""
    import json

    arrays = dict(np.load(ink_run / "model.npz", allow_pickle=False))
    header = json.loads(arrays["header"].tobytes())
    edit(header)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path = tmp_path / "crafted.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("command", ["info", "predict", "export"])
def test_deeply_nested_headers_are_one_line_errors(ink_run, tmp_path, command):
    arrays = dict(np.load(ink_run / "model.npz", allow_pickle=False))
    text = arrays["header"].tobytes().decode()
    deep = text[:-1] + ', "junk": ' + "[" * 100_000 + "]" * 100_000 + "}"
    arrays["header"] = np.frombuffer(deep.encode(), dtype=np.uint8)
    model = tmp_path / "deep.npz"
    np.savez(model, **arrays)
    args = {"info": [model], "predict": [model, FIXTURES / "v1_bar.png"],
            "export": [model, "-o", tmp_path / "x.ebpb"]}[command]  # fmt: skip
    _assert_one_line_error(_cli(command, *args), str(model), "nests deeper than 32 levels")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda h: h.update(metrics=[1, 2]), "'metrics' must be a JSON object, got list"),
        (lambda h: h.update(training_options="mnist"), "'training_options' must be a JSON object"),
        (lambda h: h.update(classes=[0, 0, 2]), "'classes' [0, 0, 2] differs"),
        (lambda h: h.update(class_names=["bar", "bar", "ring"]), "names must be unique"),
        (lambda h: h.update(input={"polarity": "sideways"}), "header field 'input'"),
        (lambda h: h.update(n_iter="3"), "'n_iter' must be an integer"),
    ],
)
def test_header_fields_of_the_wrong_type_are_one_line_errors(ink_run, tmp_path, edit, needle):
    model = _crafted(tmp_path, ink_run, edit)
    for args in (["info", model], ["predict", model, FIXTURES / "v1_bar.png"]):
        _assert_one_line_error(_cli(*args), str(model), needle)


def test_a_repeated_class_in_the_array_is_refused(ink_run, tmp_path):
    arrays = dict(np.load(ink_run / "model.npz", allow_pickle=False))
    arrays["classes"] = np.array([0, 0, 2])
    np.savez(tmp_path / "dup.npz", **arrays)
    _assert_one_line_error(_cli("info", tmp_path / "dup.npz"), "must list distinct labels")


def test_a_repeated_reinforcement_key_is_an_error(tmp_path):
    r = _cli(*TINY, "--reinforcement", "hidden=1.0001,hidden=1.01", "--out", tmp_path / "r")
    assert r.exit_code != 0 and "hidden is given twice" in r.output, r.output
    assert not (tmp_path / "r").exists()


def test_sweep_names_stay_inside_and_paths_follow_the_toml(tmp_path, monkeypatch):
    from ebprop.sweep import load_experiment

    (tmp_path / "exp").mkdir()
    bad = tmp_path / "exp" / "escape.toml"
    bad.write_text('name = "../../outside"\n[settings]\nepochs = 1\n')
    r = _cli("sweep", bad, "--dry-run")
    _assert_one_line_error(r, str(bad), "one folder name")
    _ink_folder(tmp_path / "exp" / "ink", n=4)
    good = tmp_path / "exp" / "own.toml"
    good.write_text('out = "results"\n[settings]\ndataset = "ink"\nepochs = 1\nhidden = [4]\n'
                    'data_dir = "cache"\n')  # fmt: skip
    monkeypatch.chdir(tmp_path)  # another working folder than the TOML's
    exp = load_experiment(good)
    assert exp.out == str(tmp_path / "exp" / "results")
    assert exp.data_dir == str(tmp_path / "exp" / "cache")
    assert exp.runs[0].options["dataset"] == str(tmp_path / "exp" / "ink")
    assert load_experiment(ROOT / "experiments" / "mnist_headline.toml").out == str(
        ROOT / "runs" / "mnist_headline"
    )  # the shipped files keep writing to runs/ at the checkout's root


def test_conv_architectures_are_sized_too(tmp_path):
    from ebprop import EBPClassifier
    from ebprop.core.architecture import parse_architecture
    from ebprop.memory import conv_bytes

    # 28x28x1 -> 26x26x100000 (3x3 kernels): weights 10 * 1e5 + outputs 67.6e6 * 10 + 10
    w = 10 * 100_000 + (26 * 26 * 100_000 + 1) * 10
    units = 784 + 26 * 26 * 100_000 + 10
    cols = 26 * 26 * 9
    expected = 4 * (6 * w + 10 * (12 * units + 3 * cols) + 70000 * 784)
    assert conv_bytes(parse_architecture("100000C3"), (28, 28, 1), 10, 10, 4, 70000) == expected
    r = _cli("train", "--dataset", "mnist", "--arch", "100000C3", "--epochs", "1", "-q",
             "--out", tmp_path / "run")  # fmt: skip
    assert r.exit_code == 2 and f"({expected:,} bytes)" in r.output, r.output
    assert "architecture 100000C3 on 28x28" in r.output and not (tmp_path / "run").exists()
    X = np.random.default_rng(0).random((20, 64))
    with pytest.raises(ValueError, match="architecture 8C3 on 8x8x1 .* max_memory of"):
        EBPClassifier(architecture="8C3", max_memory="10K").fit(X, np.arange(20) % 2)


def test_a_malformed_array_manifest_is_one_line(ink_run, tmp_path):
    def edit(h):
        h["arrays"]["coef_0"]["shape"] = 7

    model = _crafted(tmp_path, ink_run, edit)
    _assert_one_line_error(_cli("info", model), str(model), "malformed")

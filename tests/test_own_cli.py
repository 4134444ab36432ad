"""The command line on your own data, class names, run folders and .ebpb models, save/load."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from sklearn.datasets import load_digits

import ebprop
from ebprop.cli import main
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.persist import load_model

NAMES = ("zero", "one", "two")


def _digit_folder(root, classes=(0, 1, 2), scale=15, flip=False):
    """Digits 0..2 of scikit-learn as 8x8 PNGs in class folders named by word."""
    d = load_digits()
    for i, (x, c) in enumerate(zip(d.images, d.target, strict=True)):
        if c in classes:
            (root / NAMES[c]).mkdir(parents=True, exist_ok=True)
            img = (x * scale).astype(np.uint8)
            Image.fromarray(255 - img if flip else img).save(root / NAMES[c] / f"{i:04d}.png")
    return root


def _invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ok(args):
    result = _invoke(args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("own")
    data = _digit_folder(base / "words")
    out = base / "run"
    text = _ok(["train", "--dataset", data, "--hidden", "20", "--epochs", "3", "--out", out,
                "--json", "--quiet"])  # fmt: skip
    return data, out, json.loads(text)


def test_train_on_a_folder_json_and_class_names(folder_run):
    data, out, summary = folder_run
    assert summary["finished"] and summary["out_dir"] == str(out)
    assert summary["options"]["dataset"] == str(data.resolve())  # stored absolute
    assert summary["test_error_p"] < 0.1  # three easy digit classes are learnt
    model = load_model(out / "model.npz")
    assert model.class_names == ("one", "two", "zero")  # sorted folder names
    assert len(load_dataset(data).y_test) == 107  # a stratified 0.2 of 537


def test_quiet_prints_only_the_result(folder_run, tmp_path):
    data, _, _ = folder_run
    # batch 2: a 5-unit layer diverges at the default batch 10 (exit 3, docs/cli.md)
    text = _ok(["train", "--dataset", data, "--hidden", "5", "--epochs", "1", "--quiet",
                "--batch-size", "2", "--out", tmp_path / "q"])  # fmt: skip
    assert text.startswith("done: best epoch 1/1") and "train " not in text


def test_info_predict_evaluate_print_class_names(folder_run):
    data, out, _ = folder_run
    assert "classes: one, two, zero" in _ok(["info", out])  # a run folder is accepted
    two = sorted((data / "two").iterdir())[0]
    rows = json.loads(_ok(["predict", out, two, "--json"]))
    assert rows[0]["name"] == "two" and rows[0]["name_d"] in NAMES
    assert f"{two}  class two  p=" in _ok(["predict", out / "model.npz", two])
    text = _ok(["evaluate", out])
    assert "words test split, 107 images" in text and "      zero" in text


def test_evaluate_another_folder_matches_classes_by_name(folder_run, tmp_path):
    _, out, _ = folder_run
    # only two of the classes, dark on light 16-bit-free PNGs: labels must map to the model's
    other = _digit_folder(tmp_path / "other", classes=(0, 2))
    report = json.loads(_ok(["evaluate", out, "--dataset", other, "--split", "all", "--json"]))
    assert report["n_samples"] == sum(1 for _ in other.rglob("*.png"))
    model = load_model(out / "model.npz")
    ds = load_dataset(other, validation=0)
    X, y = ds.split("all")
    want = model.estimator.classes_[[model.class_names.index(ds.class_names[i]) for i in y]]
    pred = model.estimator.predict(model.preprocessor.transform(X))
    assert report["error_p"] == pytest.approx(np.mean(pred != want))
    assert report["error_p"] < 0.1
    # a class the model does not know: one line naming it
    _digit_folder(tmp_path / "bad", classes=(0, 1))
    (tmp_path / "bad" / "one").rename(tmp_path / "bad" / "seven")
    r = _invoke(["evaluate", out, "--dataset", tmp_path / "bad", "--split", "all"])
    assert r.exit_code == 1 and "['seven'] are not among the model's classes" in r.output


def test_bad_own_options_are_refused_before_writing(folder_run, tmp_path):
    data, _, _ = folder_run
    out = tmp_path / "never"
    r = _invoke(["train", "--dataset", data, "--test-fraction", "1.5", "--out", out])
    assert r.exit_code == 2 and "test_fraction" in r.output and not out.exists()
    r = _invoke(["train", "--dataset", data, "--resize", "--out", out])
    assert r.exit_code == 2 and "image_size" in r.output and not out.exists()
    r = _invoke(["train", "--dataset", data, "--image-size", "8y8", "--out", out])
    assert r.exit_code == 2 and "HEIGHTxWIDTH" in r.output
    r = _invoke(["train", "--dataset", data, "--image-size", "9x9", "--out", out])
    assert r.exit_code == 1 and "9x9" in r.output and "--resize" in r.output
    r = _invoke(["train", "--dataset", tmp_path / "missing", "--out", out])
    assert r.exit_code == 1 and "missing" in r.output and not out.exists()


def test_resize_and_test_fraction_reach_the_loader(tmp_path):
    data = _digit_folder(tmp_path / "w", classes=(0, 1))
    Image.new("L", (12, 10)).save(next((data / "one").iterdir()))  # one image of another size
    out = tmp_path / "run"
    summary = json.loads(_ok(["train", "--dataset", data, "--image-size", "8x8", "--resize",
                              "--test-fraction", "0.5", "--hidden", "5", "--epochs", "1",
                              "--out", out, "--json", "-q"]))  # fmt: skip
    assert summary["options"]["image_size"] == [8, 8]
    ds = load_dataset(data, image_size=(8, 8), resize="resize", test_fraction=0.5)
    report = json.loads(_ok(["evaluate", out, "--json"]))  # rebuilds the same split
    assert report["n_samples"] == len(ds.y_test)


def test_oversize_and_unreadable_predict_inputs(folder_run, tmp_path):
    _, out, _ = folder_run
    Image.new("L", (4097, 4097)).save(tmp_path / "huge.png")
    r = _invoke(["predict", out, tmp_path / "huge.png"])
    assert r.exit_code == 1 and r.output.startswith("error: ") and "huge.png" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_predict_inverts_light_pages(folder_run, tmp_path):
    data, out, _ = folder_run
    d = load_digits()
    i = int(np.flatnonzero(d.target == 2)[0])
    page = 255 - np.kron(d.images[i] * 15, np.ones((6, 6))).astype(np.uint8)  # big, dark ink
    Image.fromarray(page).save(tmp_path / "page.png")
    row = json.loads(_ok(["predict", out, tmp_path / "page.png", "--json"]))[0]
    assert row["name"] == "two"
    kept = _invoke(["predict", out, tmp_path / "page.png", "--invert", "no", "--json"])
    no = json.loads(kept.stdout)[0]
    assert no["probability"] != row["probability"]
    # the model recorded light-on-dark training images: the kept page is flagged
    assert "page.png: looks dark on light" in kept.stderr


def test_feature_models(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = np.where(X[:, 0] + X[:, 1] > 0, "pos", "neg")
    np.savez(tmp_path / "f.npz", X_train=X, y_train=y)
    np.save(tmp_path / "rows.npy", X[:4])
    out = tmp_path / "run"
    _ok(["train", "--dataset", tmp_path / "f.npz", "--hidden", "10", "--epochs", "3",
         "--batch-size", "1", "--out", out, "-q"])  # fmt: skip
    assert "input: 5 features" in _ok(["info", out])
    rows = json.loads(_ok(["predict", out, tmp_path / "rows.npy", "--json"]))
    m = load_model(out / "model.npz")
    assert [r["class"] for r in rows] == m.estimator.predict(
        m.preprocessor.transform(X[:4], np.float32)
    ).tolist()
    assert {r["name"] for r in rows} <= {"neg", "pos"}
    Image.new("L", (8, 8)).save(tmp_path / "x.png")
    r = _invoke(["predict", out, tmp_path / "x.png"])
    assert r.exit_code == 1 and "trained on features" in r.output
    r = _invoke(["export", out / "model.npz", "-o", tmp_path / "f.ebpb"])
    assert r.exit_code == 1 and "trained on features" in r.output
    assert not (tmp_path / "f.ebpb").exists()


def test_ebpb_models_are_ebp_d_only(tmp_path):
    out = tmp_path / "run"
    _ok(["train", "--hidden", "16", "--epochs", "1", "--out", out, "-q"])
    _ok(["export", out / "model.npz", "-o", tmp_path / "m.ebpb"])
    ebpb = tmp_path / "m.ebpb"
    assert "EBP-D (sign network) only" in _ok(["info", ebpb])
    assert json.loads(_ok(["info", ebpb, "--json"]))["sizes"] == [64, 16, 10]
    full = json.loads(_ok(["evaluate", out, "--json"]))
    packed = json.loads(_ok(["evaluate", ebpb, "--dataset", "digits", "--json"]))
    assert packed["error_d"] == pytest.approx(full["error_d"]) and "error_p" not in packed
    r = _invoke(["evaluate", ebpb])
    assert r.exit_code == 2 and "--dataset" in r.output
    d = load_digits()
    np.save(tmp_path / "d.npy", d.images[:5].astype(np.uint8))
    rows = json.loads(_ok(["predict", ebpb, tmp_path / "d.npy", "--json"]))
    m = load_model(out / "model.npz")
    want = m.estimator.predict(m.preprocessor.transform(d.images[:5]), readout="deterministic")
    assert [r["class_d"] for r in rows] == want.tolist()
    assert all(r["probability"] is None for r in rows)


def test_run_folder_without_a_model(tmp_path):
    r = _invoke(["info", tmp_path])
    assert r.exit_code == 1 and "no model.npz" in r.output


def test_save_and_load_from_python_then_evaluate_without_flags(tmp_path):
    ds = load_dataset("digits")
    pre = Preprocessor().fit(ds.X_train, ds.max_value)
    clf = ebprop.EBPClassifier(hidden_layer_sizes=[16], max_iter=2, random_state=0)
    clf.fit(pre.transform(ds.X_train), ds.y_train)
    path = tmp_path / "m.npz"
    ebprop.save_model(path, clf, pre, {"training_options": {"dataset": "digits"}})
    m = ebprop.load_model(path)
    X = pre.transform(ds.X_test)
    np.testing.assert_array_equal(m.estimator.predict(X), clf.predict(X))
    report = json.loads(_ok(["evaluate", path, "--json"]))
    assert report["error_p"] == pytest.approx(np.mean(clf.predict(X) != ds.y_test))
    # the two-argument form, and class names kept or checked
    ebprop.save_model(tmp_path / "bare.npz", clf)
    assert ebprop.load_model(tmp_path / "bare.npz").class_names == tuple(map(str, range(10)))
    with pytest.raises(ValueError, match="3 names for 10 classes"):
        ebprop.save_model(tmp_path / "x.npz", clf, metadata={"class_names": ["a", "b", "c"]})
    r = _invoke(["evaluate", tmp_path / "bare.npz"])
    assert r.exit_code == 2 and "records no dataset" in r.output


def test_fashion_mnist_names():
    try:
        data = load_dataset("fashion-mnist", download=False, validation=0)
    except (OSError, ValueError):
        pytest.skip("Fashion-MNIST files not available")
    assert data.class_names[:2] == ("T-shirt/top", "Trouser")


def test_python_dash_m_ebprop():
    r = subprocess.run(
        [sys.executable, "-m", "ebprop", "--help"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: ebprop") and "train" in r.stdout


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from ebprop.cli.train import show_progress

    class Tty:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, "stderr", Tty(True))
    assert show_progress(False) and not show_progress(True)
    monkeypatch.setattr(sys, "stderr", Tty(False))
    assert not show_progress(False)


def test_runs_stored_before_the_split_options_still_match():
    from ebprop.runs import TrainOptions
    from ebprop.runs.folder import differing_options

    new = TrainOptions().to_dict()
    old = {k: v for k, v in new.items() if k not in ("test_fraction", "test_seed", "image_size",
                                                     "resize")}  # fmt: skip
    assert differing_options(new, old) == []
    assert differing_options(TrainOptions(test_fraction=0.3).to_dict(), old) == ["test_fraction"]

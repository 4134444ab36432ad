"""Training-set augmentation by random shifts (``augment_shift``, ``--augment-shift``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ebprop import EBPClassifier
from ebprop.cli import main
from ebprop.datasets.augment import MAX_SHIFT, check_max_shift, epoch_shifts, shift_images
from ebprop.persist import load_model
from ebprop.runs import TrainOptions, load_options, train_run

AUG = {"hidden": (100,), "epochs": 3, "seed": 5, "augment_shift": 1}


def _shift_by_pixels(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    # the definition, one pixel at a time
    h, w = image.shape
    out = np.zeros_like(image)
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[y, x] = image[y - dy, x - dx]
    return out


def test_shift_images_matches_the_pixel_definition():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(40, 7, 9)).astype(np.uint8)
    offsets = rng.integers(-8, 9, size=(40, 2))
    offsets[:3] = [[0, 0], [7, 0], [0, -9]]  # unchanged; all but one row gone; all gone
    out = shift_images(images, offsets)
    assert out.dtype == images.dtype and out.shape == images.shape
    for i, (dy, dx) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], _shift_by_pixels(images[i], dy, dx))
    np.testing.assert_array_equal(out[0], images[0])
    assert not out[2].any()
    with pytest.raises(ValueError, match=r"\(n, h, w\[, c\]\) images and \(n, 2\) offsets"):
        shift_images(images.reshape(40, -1), offsets)


def test_shift_rgb_images_moves_the_three_channels_together():
    rng = np.random.default_rng(1)
    images = rng.integers(1, 256, size=(12, 5, 6, 3)).astype(np.uint8)
    offsets = rng.integers(-3, 4, size=(12, 2))
    out = shift_images(images, offsets)
    assert out.shape == images.shape
    for i, (dy, dx) in enumerate(offsets):
        for c in range(3):
            expected = _shift_by_pixels(images[i, :, :, c], dy, dx)
            np.testing.assert_array_equal(out[i, :, :, c], expected)


def test_epoch_shifts_depend_on_seed_and_epoch_only():
    a = epoch_shifts(5000, 2, seed=3, epoch=4)
    np.testing.assert_array_equal(a, epoch_shifts(5000, 2, seed=3, epoch=4))
    assert a.shape == (5000, 2) and a.min() == -2 and a.max() == 2
    counts = np.bincount((a + 2).ravel(), minlength=5)
    assert counts.min() > 0.17 * a.size  # uniform over −2..2 (0.2 each)
    assert not np.array_equal(a, epoch_shifts(5000, 2, seed=3, epoch=5))
    assert not np.array_equal(a, epoch_shifts(5000, 2, seed=4, epoch=4))
    assert not epoch_shifts(10, 0, seed=3, epoch=1).any()


@pytest.mark.parametrize("bad", [-1, MAX_SHIFT + 1, 1.5, True, "2"])
def test_shift_option_is_checked(bad):
    with pytest.raises(ValueError, match="augment_shift must be"):
        check_max_shift(bad)
    with pytest.raises(ValueError, match="augment_shift must be"):
        TrainOptions(augment_shift=bad)


def test_augmented_run_resumes_identically_and_trains_on_shifted_images(tmp_path):
    full, part, plain = tmp_path / "full", tmp_path / "part", tmp_path / "plain"
    train_run(TrainOptions(**AUG), full, make_plots=False)
    stopped = train_run(
        TrainOptions(**AUG), part, on_batch=lambda e, p, n: e == 2 and p >= 500,
        checkpoint_every=None,
    )  # fmt: skip
    assert stopped["finished"] is False
    train_run(None, part, resume=True, make_plots=False)
    for a, b in zip(load_model(full / "last.npz").estimator.coefs_,
                    load_model(part / "last.npz").estimator.coefs_, strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    # the same run without augmentation ends elsewhere: the images really were shifted
    train_run(TrainOptions(**(AUG | {"augment_shift": 0})), plain, make_plots=False)
    assert not np.array_equal(
        load_model(full / "last.npz").estimator.coefs_[0],
        load_model(plain / "last.npz").estimator.coefs_[0],
    )
    assert load_options(full).augment_shift == 1


def test_augmentation_needs_images(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "feat.npz"
    np.savez(path, X_train=rng.normal(size=(60, 5)), y_train=np.arange(60) % 3)
    with pytest.raises(ValueError, match="holds features .* not images"):
        train_run(TrainOptions(dataset=str(path), augment_shift=1, hidden=(4,)), tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before the first write


def test_cli_option_and_runs_stored_before_it(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--hidden", "8", "--epochs", "1", "--augment-shift", "2", "-q", "--out"]
    result = CliRunner().invoke(main, [*args, str(out)])
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "options.json").read_text())
    assert stored["augment_shift"] == 2
    # a run stored before the option existed resumes as unaugmented
    del stored["augment_shift"]
    (out / "options.json").write_text(json.dumps(stored))
    assert load_options(out).augment_shift == 0
    result = CliRunner().invoke(main, ["train", "--resume", str(out), "--epochs", "2", "-q"])
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(main, ["train", "--augment-shift", "9", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "augment_shift must be between 0 (off) and 8" in bad.output


def test_shifted_training_images_teach_shifted_test_images():
    """A known answer: trained on images shifted by up to 1 pixel, the net classifies test images
    shifted by 1 pixel better than one trained on the originals (64-50-10, 10 epochs, 3 seeds)."""
    X, y = load_digits(return_X_y=True)
    images = X.reshape(-1, 8, 8) / 16.0
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=0, stratify=y)
    rng = np.random.default_rng(1)
    moved = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])[rng.integers(0, 4, len(te))]
    X_te = shift_images(images[te], moved).reshape(len(te), -1)
    errors = {0: [], 1: []}
    for shift in errors:
        for seed in range(3):
            clf = EBPClassifier(hidden_layer_sizes=(50,), max_iter=1, random_state=seed,
                                warm_start=True)  # fmt: skip
            for epoch in range(1, 11):
                offsets = epoch_shifts(len(tr), shift, seed, epoch)
                clf.fit(shift_images(images[tr], offsets).reshape(len(tr), -1), y[tr])
            errors[shift].append(np.mean(clf.predict(X_te) != y[te]))
    assert np.mean(errors[1]) < np.mean(errors[0]) - 0.05
    assert max(errors[1]) < min(errors[0])

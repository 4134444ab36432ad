"""BinaryNet: the straight-through gradient, the exact fold into an EBP-D model, the same export.

Needs torch (the ``baselines`` extra, installed in CI).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from packed_c_helper import c_predict, requires_cc  # noqa: E402

from ebprop.baselines import BaselineOptions, train_baseline  # noqa: E402
from ebprop.baselines.binarynet import (  # noqa: E402
    BinaryNet,
    SignSTE,
    folded_estimator,
)
from ebprop.cli import main  # noqa: E402
from ebprop.datasets import Preprocessor, load_dataset  # noqa: E402
from ebprop.exceptions import ModelFormatError  # noqa: E402
from ebprop.fileio import atomic_savez, decode_header, encode_header, read_npz  # noqa: E402
from ebprop.packed import PackedNetwork  # noqa: E402
from ebprop.persist import load_model, save_model  # noqa: E402


def _np_sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def test_sign_ste_passes_gradient_exactly_where_abs_is_at_most_one():
    x = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.7, 1.0, 1.0001, 3.0], requires_grad=True)
    y = SignSTE.apply(x)
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1, 1]
    y.backward(torch.arange(1.0, 9.0))
    assert x.grad.tolist() == [0, 2, 3, 4, 5, 6, 0, 0]


def test_straight_through_gradient_matches_its_definition_on_a_small_net():
    """Autograd's gradient equals backpropagation written out by hand, with ∂sign(y)/∂y taken as
    1{|y| ≤ 1} for activations and shadow weights alike."""
    torch.manual_seed(3)
    net = BinaryNet(6, 3, (5, 4), batch_norm=False, bias=True).double()
    with torch.no_grad():
        for b in net.biases:
            b.uniform_(-0.5, 0.5)
        net.weights[0][0, 0] = 1.5  # a shadow weight past the clip: its gradient is cancelled
        net.weights[1][2, 1] = -1.0  # on the edge: it passes
    x = torch.rand(7, 6, dtype=torch.float64) * 3
    y = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()

    W = [w.detach().numpy() for w in net.weights]
    b = [v.detach().numpy() for v in net.biases]
    a = [1 / np.sqrt(6), 1 / np.sqrt(5), 1 / np.sqrt(4)]
    h, zs, hs = x.numpy(), [], [x.numpy()]
    for i in range(3):
        z = h @ _np_sign(W[i]).T * a[i] + b[i]
        zs.append(z)
        if i < 2:
            h = _np_sign(z)
            hs.append(h)
    p = np.exp(zs[2] - zs[2].max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(3)[y.numpy()]) / len(y)
    for i in (2, 1, 0):
        dW = a[i] * dz.T @ hs[i] * (np.abs(W[i]) <= 1)
        np.testing.assert_allclose(net.weights[i].grad.numpy(), dW, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(
            net.biases[i].grad.numpy(), dz.sum(axis=0), rtol=1e-10, atol=1e-14
        )
        if i:
            dz = (a[i] * dz @ _np_sign(W[i])) * (np.abs(zs[i - 1]) <= 1)
    assert net.weights[0].grad[0, 0] == 0 and net.weights[1].grad[2, 1] != 0
    inside = np.concatenate([np.abs(z).ravel() <= 1 for z in zs[:2]])
    assert inside.any() and not inside.all()  # the cancellation both passes and stops gradients


def _random_net(scaling: str, m: int, seed: int, bias: bool = True, gain: float = 1.0) -> BinaryNet:
    """A BinaryNet with random batch-norm statistics, scales of both signs (one zero), biases."""
    g = torch.Generator().manual_seed(seed)
    net = BinaryNet(
        20, 4, (12, 9), batch_norm=True, bias=bias, pixels=(scaling, m, gain), dtype="float32"
    )
    with torch.no_grad():
        for w in net.weights:
            w.uniform_(-1, 1, generator=g)
        for b in net.biases:
            b.normal_(0, 0.5, generator=g)
        for bn in net.norms:
            n = bn.num_features
            bn.running_mean.normal_(0, 1.0, generator=g)
            bn.running_var.uniform_(0.05, 3.0, generator=g)
            bn.weight.normal_(0, 1.0, generator=g)
            bn.bias.normal_(0, 1.0, generator=g)
            bn.weight[n // 2] = 0.0  # a constant unit: fires iff β ≥ 0
        assert any((bn.weight < 0).any() for bn in net.norms)
    return net.eval()


def _torch_reference(net: BinaryNet, pixels: np.ndarray, scaling: str, m: int, gain: float = 1.0):
    """Hidden signs and output argmax of the standard eval-mode modules in float64 on
    x = g·p/m (or g·(2p/m − 1))."""
    x = torch.from_numpy(pixels.astype(np.float64) / m)
    if scaling == "symmetric":
        x = x * 2 - 1
    x = x * gain
    h, signs = x, []
    net = net.double()
    with torch.no_grad():
        for i, w in enumerate(net.weights):
            z = torch.nn.functional.linear(h, torch.where(w >= 0, 1.0, -1.0).double())
            z = z * net.alphas[i] + (net.biases[i] if net.has_bias else 0)
            if i == len(net.weights) - 1:
                return signs, z.argmax(dim=1).numpy()
            h = torch.where(net.norms[i](z) >= 0, 1.0, -1.0).double()
            signs.append(h.numpy() > 0)
    raise AssertionError


@pytest.mark.parametrize(
    ("scaling", "m", "bias", "gain"),
    [("unit", 16, True, 1.0), ("symmetric", 255, False, 1.0), ("unit", 16, True, 3.0),
     ("symmetric", 255, True, 2.5)],
)  # fmt: skip
def test_fold_is_exact_with_negative_batch_norm_scales(scaling, m, bias, gain):
    net = _random_net(scaling, m, seed=7, bias=bias, gain=gain)
    folded = net.fold()
    assert any(f.any() for f in folded.flipped) and not all(f.all() for f in folded.flipped)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, m + 1, size=(3000, 20))
    pixels[:50] = 0  # extremes of the pixel range
    pixels[50:100] = m
    # every hidden decision of the folded integer thresholds equals torch's eval-mode network
    signs, pred = _torch_reference(net, pixels, scaling, m, gain)
    stored = [np.rint(c.T).astype(np.int64) for c in folded.coefs]
    s = pixels @ stored[0].T
    for layer, (T, ref) in enumerate(zip(folded.thresholds, signs, strict=True)):
        fires = s >= T
        np.testing.assert_array_equal(fires, ref, err_msg=f"layer {layer}")
        s = np.where(fires, 1, -1) @ stored[layer + 1].T
    assert 0.05 < np.mean(np.concatenate([f.ravel() for f in signs])) < 0.95
    # ... and the packed network (same biases, same file path as EBP) predicts the same classes
    pre = Preprocessor(scaling=scaling, input_gain=gain)
    pre.fit(np.zeros((1, 4, 5), dtype=np.uint8), m)
    est = folded_estimator(folded, np.arange(4), "float32")
    packed = PackedNetwork.from_estimator(est, pre)
    np.testing.assert_array_equal(packed.predict(pixels.astype(np.uint8).reshape(-1, 4, 5)), pred)
    # the test-time network of the module agrees too
    feats = torch.from_numpy(pre.transform(pixels.astype(np.uint8).reshape(-1, 4, 5), np.float32))
    np.testing.assert_array_equal(net.float().sign_predict(feats), pred)


def test_fold_of_every_hidden_dot_product_matches_exact_rational_batch_norm():
    """Exhaustive over s ∈ [-n, n] for the second hidden layer: T, the flip and the stored row
    reproduce γ·((α·s + b) − μ)/σ + β ≥ 0 evaluated in exact rational arithmetic."""
    from fractions import Fraction

    net = _random_net("unit", 16, seed=11)
    folded = net.fold()
    n, layer = 12, 1
    bn = net.norms[layer]
    for u in range(9):
        T, flip = int(folded.thresholds[layer][u]), bool(folded.flipped[layer][u])
        std = float(np.sqrt(np.float64(bn.running_var[u].item()) + bn.eps))
        for s in range(-n, n + 1):
            z = Fraction(s) * Fraction(net.alphas[layer]) + Fraction(net.biases[layer][u].item())
            y = Fraction(bn.weight[u].item()) * (z - Fraction(bn.running_mean[u].item()))
            y = y / Fraction(std) + Fraction(bn.bias[u].item())
            t = -s if flip else s
            assert (t >= T) == (y >= 0), (u, s)


def test_fold_refuses_float_features():
    net = BinaryNet(5, 3, (4,), pixels=None)
    with pytest.raises(ValueError, match="fold needs pixel features"):
        net.fold()


def test_sign_network_refuses_features_that_are_not_its_pixels():
    net = BinaryNet(5, 3, (4,), pixels=("unit", 16))
    with pytest.raises(ValueError, match="not uint8 pixels scaled by 'unit'"):
        net.sign_predict(torch.full((2, 5), 0.5 / 16))


def test_options_of_binarynet():
    o = BaselineOptions(method="binarynet")
    assert o.batch_norm is True and o.fit_intercept is True
    with pytest.raises(ValueError, match=r"^fit_intercept must be True or False, got 'no'$"):
        BaselineOptions(method="binarynet", fit_intercept="no")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("bnn") / "run"
    opts = BaselineOptions(
        method="binarynet", hidden=(64, 48), epochs=12, batch_size=32, dataset="digits", seed=1
    )
    summary = train_baseline(opts, out, threads=1)
    return out, summary, opts


def test_binarynet_learns_the_digits_and_saves_its_sign_network(trained):
    out, summary, _ = trained
    assert summary["finished"] and set(summary["readouts"]) == {"BNN"}
    assert summary["test_error"] < 0.15  # chance is 0.9
    loaded = load_model(out / "model.npz")
    assert loaded.method == "binarynet"
    assert loaded.metadata["metrics"]["test_error_d"] == summary["test_error"]
    assert set(np.unique(np.concatenate([c.ravel() for c in loaded.estimator.coefs_]))) == {-1, 1}


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """The last epoch's torch network (from the checkpoint), its test-time predictions on 1,000
    digit images, and its model file exported by ``ebprop export``."""
    out, summary, opts = trained
    tmp_path = tmp_path_factory.mktemp("exp")
    from ebprop.baselines.torch_mlp import build_model
    from ebprop.runs import load_features
    from ebprop.runs.folder import RunFolder

    data = load_features(opts)
    _, z = RunFolder(out).read_checkpoint(key="meta")
    net = build_model(data.X_train.shape[1], 10, opts, data.preprocessor)
    net.load_state_dict(
        {k[6:]: torch.from_numpy(v) for k, v in z.items() if k.startswith("model/")}
    )
    ds = load_dataset("digits")
    images = np.concatenate([ds.X_train, ds.X_val, ds.X_test])[:1000]
    feats = torch.from_numpy(data.preprocessor.transform(images, np.float32))
    torch_pred = net.eval().sign_predict(feats)
    model_path = tmp_path / "last.npz"
    from ebprop.baselines.binarynet import save_binarynet

    record = {"epoch": 0, "val_error": None, "test_error": None}
    save_binarynet(model_path, net, data, opts, record)
    res = CliRunner().invoke(main, ["export", str(model_path), "-o", str(tmp_path / "m.ebpb")])
    assert res.exit_code == 0, res.output
    return net, images, feats, torch_pred, model_path, tmp_path / "m.ebpb"


def test_exported_binarynet_predicts_as_the_torch_test_time_network(exported):
    """1,000 digit images: the packed .ebpb and the model's own EBP-D readout give exactly the
    torch network's test-time predictions (and so do torch's standard eval-mode modules)."""
    net, images, feats, torch_pred, model_path, ebpb = exported
    ds = load_dataset("digits")
    labels = np.concatenate([ds.y_train, ds.y_val, ds.y_test])[:1000]
    assert len(images) == 1000 and np.mean(torch_pred == labels) > 0.8
    ref_signs, ref_pred = _torch_reference(net, images.reshape(1000, -1), "unit", 16)
    np.testing.assert_array_equal(torch_pred, ref_pred)
    np.testing.assert_array_equal(PackedNetwork.load(ebpb).predict(images), torch_pred)
    est_pred = load_model(model_path).estimator.predict(feats.numpy(), readout="deterministic")
    np.testing.assert_array_equal(est_pred, torch_pred)


@requires_cc
def test_c_export_of_binarynet_predicts_as_torch(exported, tmp_path):
    net, images, feats, torch_pred, model_path, ebpb = exported
    model = PackedNetwork.load(ebpb).model
    np.testing.assert_array_equal(c_predict(model, images, tmp_path / "c"), torch_pred)
    # the Cortex-M code (32-bit words), built by the host compiler: the same arithmetic
    cm = c_predict(model, images, tmp_path / "cm4", target="cortex-m4")
    np.testing.assert_array_equal(cm, torch_pred)


def test_cli_reports_the_one_readout_of_a_binarynet_model(trained, tmp_path):
    out, summary, _ = trained
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", str(out / "model.npz"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["method"] == "binarynet" and "error_p" not in report
    assert report["error_d"] == pytest.approx(summary["test_error"])
    res = runner.invoke(main, ["evaluate", str(out)])
    assert res.exit_code == 0 and "BinaryNet" in res.output and "EBP-P" not in res.output
    res = runner.invoke(main, ["info", str(out / "model.npz"), "--json"])
    assert json.loads(res.output)["readouts"] == ["deterministic"]
    res = runner.invoke(main, ["info", str(out / "model.npz")])
    assert "BinaryNet" in res.output and "EBP-P" not in res.output
    img = tmp_path / "x.npy"
    np.save(img, load_dataset("digits").X_test[0])
    res = runner.invoke(main, ["predict", str(out / "model.npz"), str(img)])
    assert res.exit_code == 0 and "BinaryNet class" in res.output, res.output
    res = runner.invoke(
        main,
        [
            "export",
            str(out / "model.npz"),
            "--format",
            "c",
            "--target",
            "cortex-m4",
            "-o",
            str(tmp_path / "cm4"),
        ],
    )
    assert res.exit_code == 0 and (tmp_path / "cm4" / "model.c").is_file(), res.output


def test_unknown_method_in_a_model_file_is_refused(trained, tmp_path):
    out, _, _ = trained
    loaded = load_model(out / "model.npz")
    path = tmp_path / "m.npz"
    with pytest.raises(ValueError, match="metadata\\['method'\\]: unknown training method"):
        save_model(path, loaded.estimator, loaded.preprocessor, {"method": "xnor"})
    arrays = read_npz(out / "model.npz", what="model")
    header = decode_header(arrays.pop("header"), "x")
    header["method"] = "xnor"
    atomic_savez(path, **arrays, header=encode_header(header))
    with pytest.raises(
        ModelFormatError, match="header field .method.: unknown training method .xnor."
    ):
        load_model(path)


def test_augment_shift_is_shared_and_binarynet_trains_on_the_same_shifted_images(tmp_path):
    """augment_shift is a RunOptions field: a baseline draws each epoch's shifts exactly as an EBP
    run does (epoch_train_features), so the trained network differs from the unshifted one."""
    from ebprop.runs import RunOptions, TrainOptions
    from ebprop.runs.data import epoch_train_features, load_features

    assert RunOptions(augment_shift=2).augment_shift == 2
    with pytest.raises(ValueError, match="augment_shift must be"):
        BaselineOptions(method="binarynet", augment_shift=9)
    base = {"method": "binarynet", "hidden": (16,), "epochs": 2, "dataset": "digits", "seed": 4}
    shifted = BaselineOptions(**base, augment_shift=1)
    plain = BaselineOptions(**base)
    assert TrainOptions(augment_shift=1).augment_shift == 1
    a = train_baseline(shifted, tmp_path / "a", threads=1)
    b = train_baseline(plain, tmp_path / "b", threads=1)
    za = np.load(tmp_path / "a" / "checkpoint.npz")
    zb = np.load(tmp_path / "b" / "checkpoint.npz")
    assert not np.array_equal(za["model/weights.0"], zb["model/weights.0"])
    assert a["finished"] and b["finished"]
    # the shifted features of an epoch are the EBP runs' own
    data = load_features(shifted, keep_train_images=True)
    x1 = epoch_train_features(data, 1, shifted.seed, 1)
    assert x1.shape == data.X_train.shape and not np.array_equal(x1, data.X_train)


def test_augment_shift_on_features_fails_cleanly_for_baselines(tmp_path):
    path = tmp_path / "f.npz"
    rng = np.random.default_rng(0)
    np.savez(path, X_train=rng.random((40, 6)), y_train=np.arange(40) % 3)
    opts = BaselineOptions(method="binarynet", dataset=str(path), augment_shift=1, hidden=(4,))
    with pytest.raises(ValueError, match="augment_shift: .* holds features"):
        train_baseline(opts, tmp_path / "r")
    assert not (tmp_path / "r" / "options.json").exists()


@pytest.mark.parametrize("name", ["deepmp_mnist", "deepmp_fashion", "deployable_vs_binarynet"])
def test_published_protocol_experiments_parse_with_their_stated_settings(name):
    from pathlib import Path

    from ebprop import baselines, runs
    from ebprop.sweep import load_experiment

    exp = load_experiment(
        Path(__file__).resolve().parents[1] / "experiments" / f"{name}.toml",
        methods={**runs.METHODS, **baselines.METHODS},
    )
    by_method = {}
    for run in exp.runs:
        by_method.setdefault(run.method, []).append(run.options)
    assert {o["seed"] for opts in by_method.values() for o in opts} == {0, 1, 2}
    assert all(o["batch_size"] == 10 for o in by_method["ebp"])
    assert all(o["batch_size"] == 128 for o in by_method["binarynet"])
    assert {o["batch_norm"] for o in by_method["binarynet"]} == {False, True}
    assert [r.options["seed"] for r in exp.runs[: len(by_method)]] == [0] * len(by_method)
    shift = 1 if name.startswith("deployable") else 0
    assert {o["augment_shift"] for opts in by_method.values() for o in opts} == {shift}
    assert {o["validation"] for opts in by_method.values() for o in opts} <= {None, 10000}
    if name.startswith("deepmp"):  # EBP-D with and without biases; the names say which
        assert {o["fit_intercept"] for o in by_method["ebp"]} == {True, False}
        assert sum("nobias" in r.name for r in exp.runs) == 3


def test_time_to_error_counts_training_seconds_until_the_first_hit(trained, tmp_path):
    from ebprop.sweep.timing import parse_targets, time_to_error

    history = [
        {"epoch": 1, "seconds": 2.0, "eval_seconds": 9.0, "val_error": 0.05},
        {"epoch": 2, "seconds": 3.0, "eval_seconds": 9.0, "val_error": 0.029},
        {"epoch": 3, "seconds": 4.0, "eval_seconds": 9.0, "val_error": 0.024},
    ]
    assert time_to_error(history, "val_error", 0.03) == (5.0, 2)
    assert time_to_error(history, "val_error", 0.025) == (9.0, 3)
    assert time_to_error(history, "val_error", 0.01) is None
    cpu = [dict(r, cpu_seconds=r["seconds"] / 2) for r in history]
    assert time_to_error(cpu, "val_error", 0.025, "cpu_seconds") == (4.5, 3)
    assert time_to_error(history, "val_error", 0.025, "cpu_seconds") == (None, 3)
    assert parse_targets("3.0, 2.5") == [3.0, 2.5]
    with pytest.raises(ValueError, match="--time-to 'x'"):
        parse_targets("x")
    out, summary, _ = trained
    res = CliRunner().invoke(main, ["report", str(out.parent), "--time-to", "50,0.01"])
    assert res.exit_code == 0, res.output
    header, row = res.output.splitlines()
    assert header.endswith("t_50,cpu_50,epoch_50,t_0.01,cpu_0.01,epoch_0.01")
    cells = row.split(",")
    assert cells[1:4] == ["binarynet", "BNN", "1"] and cells[-3:] == ["", "", ""]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in metrics if r["val_error"] <= 0.5)
    expected = sum(r["seconds"] for r in metrics if r["epoch"] <= first["epoch"])
    cpu = sum(r["cpu_seconds"] for r in metrics if r["epoch"] <= first["epoch"])
    assert float(cells[-6]) == pytest.approx(expected, abs=0.06)
    assert float(cells[-5]) == pytest.approx(cpu, abs=0.06) and int(cells[-4]) == first["epoch"]
    bad = CliRunner().invoke(main, ["report", str(tmp_path), "--time-to", "3"])
    assert bad.exit_code == 1 and "no run folder" in bad.output
    bad = CliRunner().invoke(main, ["report", str(out), "--time-to", "120"])
    assert bad.exit_code == 2 and "give error targets in percent" in bad.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "options.json").write_text((out / "options.json").read_text())
    (broken / "metrics.jsonl").write_text("{not json\n")
    bad = CliRunner().invoke(main, ["report", str(broken), "--time-to", "3"])
    assert bad.exit_code == 1 and "unreadable metrics" in bad.output


def test_fold_on_28x28_pixels_predicts_as_torch_on_1000_images():
    """A 784-64-32-10 BinaryNet with random weights, biases and batch-norm statistics (scales of
    both signs) on 1,000 MNIST test images when EBPROP_DATA holds MNIST, else on 1,000 random
    28x28 images: the packed network's classes equal torch's eval-mode network's (m = 255, so
    the first layer's integer range is ±199,920)."""
    try:
        images = load_dataset("mnist").X_test[:1000]
    except Exception:  # noqa: BLE001 - no MNIST here: random pixels exercise the same arithmetic
        images = np.random.default_rng(2).integers(0, 256, (1000, 28, 28)).astype(np.uint8)
    g = torch.Generator().manual_seed(5)
    net = BinaryNet(784, 10, (64, 32), batch_norm=True, bias=True, pixels=("unit", 255))
    pre = Preprocessor().fit(images[:1], 255)
    feats = torch.from_numpy(pre.transform(images, np.float32))
    with torch.no_grad():
        for w in net.weights:
            w.uniform_(-1, 1, generator=g)
        for b in net.biases:
            b.normal_(0, 0.3, generator=g)
        for bn in net.norms:
            bn.momentum = 1.0  # running statistics := this batch's
        net.train()(feats)  # batch norm sees the images' own pre-activations
        for bn in net.norms:
            bn.weight.normal_(0, 1.0, generator=g)
            bn.bias.normal_(0, 0.5, generator=g)
    net.eval()
    folded = net.fold()
    assert all(f.any() and not f.all() for f in folded.flipped)
    _, ref = _torch_reference(net, images.reshape(1000, -1), "unit", 255)
    packed = PackedNetwork.from_estimator(folded_estimator(folded, np.arange(10), "float32"), pre)
    assert len(np.unique(ref)) > 3
    np.testing.assert_array_equal(packed.predict(images), ref)


def test_binarynet_on_float_features_trains_and_writes_no_model_file(tmp_path):
    path = tmp_path / "f.npz"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    np.savez(path, X_train=X, y_train=(X[:, 0] > 0).astype(int) + (X[:, 1] > 0))
    opts = BaselineOptions(method="binarynet", dataset=str(path), hidden=(8,), epochs=2)
    summary = train_baseline(opts, tmp_path / "r", threads=1)
    assert summary["finished"] and summary["readouts"]["BNN"]["test_error"] is not None
    assert not (tmp_path / "r" / "model.npz").exists()


def test_two_classes_use_one_output_unit_and_export_exactly(tmp_path):
    """Two classes: one output unit and the logistic loss; the exported network's classes
    equal the torch test-time network's."""
    ds = load_dataset("digits")
    keep = ds.y_train < 2
    path = tmp_path / "two.npz"
    np.savez(path, X_train=ds.X_train[keep], y_train=ds.y_train[keep], max_value=16)
    opts = BaselineOptions(
        method="binarynet", dataset=str(path), hidden=(16,), epochs=10, batch_size=10
    )
    summary = train_baseline(opts, tmp_path / "r", threads=1)
    assert summary["test_error"] < 0.2
    loaded = load_model(tmp_path / "r" / "model.npz")
    assert loaded.metadata["architecture"]["sizes"][-1] == 1
    packed = PackedNetwork.from_estimator(loaded.estimator, loaded.preprocessor)
    from ebprop.runs import load_features

    data = load_features(opts)
    pred = packed.predict(ds.X_train[keep])
    feats = loaded.preprocessor.transform(ds.X_train[keep], np.float32)
    np.testing.assert_array_equal(pred, loaded.estimator.predict(feats, readout="deterministic"))
    assert set(np.unique(pred)) <= set(data.classes.tolist())


@pytest.mark.parametrize(
    ("network", "scaling"),
    [({"hidden": (32,)}, "symmetric"), ({"architecture": "4C3p1-MP2-16"}, "unit")],
)
def test_binarynet_with_an_input_gain_exports_its_test_time_network(network, scaling, tmp_path):
    """Features g·x: the fold and the export take the gain into the first thresholds, so the
    run's test error, its EBP-D readout and the .ebpb predictions agree on every test image."""
    opts = BaselineOptions(
        method="binarynet", dataset="digits", **network, batch_norm=False, epochs=3,
        batch_size=20, learning_rate=0.01, scaling=scaling, input_gain=3.0,
    )  # fmt: skip
    summary = train_baseline(opts, tmp_path / "r", threads=1)
    loaded = load_model(tmp_path / "r" / "model.npz")
    assert loaded.preprocessor.input_gain == 3.0
    ds = load_dataset("digits")
    feats = loaded.preprocessor.transform(ds.X_test, np.float32)
    assert float(np.abs(feats).max()) == pytest.approx(3.0)
    pred = loaded.estimator.predict(feats, readout="deterministic")
    assert np.mean(pred != ds.y_test) == summary["test_error"] < 0.6
    res = CliRunner().invoke(main, ["export", str(tmp_path / "r" / "model.npz"), "-o",
                                    str(tmp_path / "m.ebpb")])  # fmt: skip
    assert res.exit_code == 0, res.output
    np.testing.assert_array_equal(PackedNetwork.load(tmp_path / "m.ebpb").predict(ds.X_test), pred)


def test_ebp_and_baseline_epochs_record_their_training_cpu_seconds(trained, tmp_path):
    from ebprop.runs import TrainOptions, train_run

    train_run(TrainOptions(hidden=(8,), epochs=2), tmp_path / "e", make_plots=False)
    out, _, _ = trained
    for path in (tmp_path / "e" / "metrics.jsonl", out / "metrics.jsonl"):
        for r in map(json.loads, path.read_text().splitlines()):
            assert 0 < r["cpu_seconds"] and "eval_seconds" in r


def test_runs_table_recipe_says_when_biases_are_off():
    from ebprop.sweep.tables import run_rows

    base = {"method": "binarynet", "options": {"hidden": [8], "seed": 0, "epochs": 3},
            "readouts": {"BNN": {"val_error": 0.1, "test_error": 0.2}}}  # fmt: skip
    off = {**base, "options": {**base["options"], "fit_intercept": False}}
    on = {**base, "options": {**base["options"], "fit_intercept": True}}
    assert run_rows([off])[0]["recipe"] == "--epochs 3 --no-fit-intercept"
    assert run_rows([on])[0]["recipe"] == "--epochs 3"


def test_runs_table_recipe_names_a_baselines_own_settings_as_train_flags():
    # Two BinaryNet rows that differ in batch norm alone must say so; the flags are train's.
    from ebprop.baselines import METHODS as BASELINES
    from ebprop.baselines.options import BaselineOptions
    from ebprop.cli.train import train
    from ebprop.sweep.tables import run_rows

    stored = [
        BaselineOptions(method="binarynet", hidden=(8,), epochs=3, batch_size=128, lr_decay=0.96,
                        batch_norm=bn).to_dict()
        for bn in (True, False)  # the order run_rows sorts them in (by recipe)
    ]  # fmt: skip
    readouts = {"BNN": {"val_error": 0.1, "test_error": 0.2}}
    summaries = [{"method": "binarynet", "options": o, "readouts": readouts} for o in stored]
    recipes = [r["recipe"] for r in run_rows(summaries, BASELINES)]
    assert recipes == [
        "--epochs 3 --batch-size 128 --lr-decay 0.96 --batch-norm",  # stored resolved: named
        "--epochs 3 --batch-size 128 --lr-decay 0.96 --no-batch-norm",
    ]
    for recipe, want in zip(recipes, stored, strict=True):
        ctx = train.make_context(
            "train", ["--method", "binarynet", "--hidden", "8", *recipe.split()]
        )
        given = {k: v for k, v in ctx.params.items() if k in want and v is not None}
        got = BaselineOptions(**{**given, "method": "binarynet"}).to_dict()
        assert {k: got[k] for k in ("batch_norm", "lr_decay", "batch_size", "epochs")} == {
            k: want[k] for k in ("batch_norm", "lr_decay", "batch_size", "epochs")
        }

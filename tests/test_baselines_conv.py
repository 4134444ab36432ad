"""The torch baselines on EBP's architecture string: conv layers, shapes, errors, learning, and
the exact fold of a conv BinaryNet into an EBP-D CNN that ``ebprop export`` ships.

Needs torch (the ``baselines`` extra, installed in CI).
"""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from packed_c_helper import c_predict, requires_cc  # noqa: E402

from ebprop.baselines import BaselineOptions, train_baseline  # noqa: E402
from ebprop.baselines.binarynet_conv import BinaryConvNet  # noqa: E402
from ebprop.baselines.convnet import ConvNet  # noqa: E402
from ebprop.baselines.torch_mlp import MLP, build_model  # noqa: E402
from ebprop.cli import main  # noqa: E402
from ebprop.core.architecture import parse_architecture  # noqa: E402
from ebprop.datasets import load_dataset  # noqa: E402
from ebprop.packed import PackedNetwork  # noqa: E402
from ebprop.persist import load_model  # noqa: E402
from ebprop.runs import load_features  # noqa: E402
from ebprop.runs.folder import RunFolder  # noqa: E402

ARCH = "8C3-MP2-32"
FOLD_ARCH = "6C3p1-MP2-8C3p1-MP2-16"  # padding, two pools, conv→conv, 2x2x8→dense→output
LEARN = {"dataset": "digits", "architecture": ARCH, "epochs": 6, "batch_size": 20}


# ------------------------------------------------------------------------------ a loop reference
def _pool(h, k):
    n, hh, ww, c = h.shape
    out = np.empty((n, hh // k, ww // k, c))
    for y in range(hh // k):
        for x in range(ww // k):
            out[:, y, x] = h[:, y * k : y * k + k, x * k : x * k + k].max(axis=(1, 2))
    return out


def _conv(h, W, k, stride, pad):
    n, hh, ww, c = h.shape
    hp = np.zeros((n, hh + 2 * pad, ww + 2 * pad, c))
    hp[:, pad : pad + hh, pad : pad + ww] = h
    oh, ow = (hh + 2 * pad - k) // stride + 1, (ww + 2 * pad - k) // stride + 1
    out = np.zeros((n, oh, ow, W.shape[0]))
    for y in range(oh):
        for x in range(ow):
            patch = hp[:, y * stride : y * stride + k, x * stride : x * stride + k]
            for o in range(W.shape[0]):  # W[o] is (C_in, ky, kx)
                out[:, y, x, o] = np.einsum("nyxc,cyx->n", patch, W[o])
    return out


def _loop_forward(x, layers, blocks, alphas, binary, activation):
    """Logits by explicit loops over NHWC images: each block's conv (zero padding, stride) or
    dense layer on the (y, x, c) flattened input, its k×k max-pools (stride k, floor), then the
    activation, as EBP lays the layers out. ``layers`` holds (W, b) in torch's shapes."""
    h = x
    for i, ((kind, *geometry, pools), (W, b)) in enumerate(zip(blocks, layers, strict=True)):
        W = np.where(W >= 0, 1.0, -1.0) if binary else W
        if kind == "conv":
            z = _conv(h, W, *geometry) * alphas[i] + b
        else:
            z = h.reshape(h.shape[0], -1) @ W.T * alphas[i] + b
        for k in pools:
            z = _pool(z, k)
        if i == len(blocks) - 1:
            return z
        h = np.maximum(z, 0) if activation == "relu" else np.tanh(z)
    raise AssertionError


@pytest.mark.parametrize("method", ["bp", "binaryconnect"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_forward_equals_a_loop_transcription_of_the_layers(method, activation):
    torch.manual_seed(0)
    specs = parse_architecture("4C3p1-MP2-5C3s2-7")
    net = ConvNet((8, 8, 2), specs, 3, method=method, activation=activation).double().eval()
    with torch.no_grad():
        for m in net.layers:
            m.bias.uniform_(-0.3, 0.3)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(6, 8, 8, 2))
    got = net(torch.from_numpy(x.reshape(6, -1))).detach().numpy()
    layers = [(m.weight.detach().numpy(), m.bias.detach().numpy()) for m in net.layers]
    blocks = [("conv", 3, 1, 1, (2,)), ("conv", 3, 2, 0, ()), ("dense", ()), ("dense", ())]
    want = _loop_forward(x, layers, blocks, net.alphas, method != "bp", activation)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    if method == "binaryconnect":
        assert net.alphas == [1 / np.sqrt(18), 1 / np.sqrt(36), 1 / np.sqrt(5), 1 / np.sqrt(7)]


def test_layer_shapes_follow_the_architecture_string():
    specs = parse_architecture("4C3p1-MP2-6C3s2-16")
    net = ConvNet((8, 8, 1), specs, 10, method="bp", batch_norm=True)
    # 8x8x1 → 4C3p1 8x8x4 → MP2 4x4x4 → 6C3s2 1x1x6 → 16 → 10
    assert net.shapes == [(4, 4, 4), (1, 1, 6), (1, 1, 16), (1, 1, 10)]
    assert net.pools == [(2,), (), (), ()]
    shapes = [tuple(m.weight.shape) for m in net.layers]
    assert shapes == [(4, 1, 3, 3), (6, 4, 3, 3), (16, 6), (10, 16)]
    assert [type(n).__name__ for n in net.norms] == ["BatchNorm2d", "BatchNorm2d", "BatchNorm1d"]
    assert net.n_weights() == 36 + 216 + 96 + 160 and net.n_biases() == 4 + 6 + 16 + 10
    assert net(torch.zeros(5, 64)).shape == (5, 10)


def test_dense_only_architecture_is_the_mlp_of_hidden():
    opts = BaselineOptions(method="bp", architecture="30-20")
    net = build_model(64, 10, opts, None)
    assert isinstance(net, MLP)
    assert [tuple(lin.weight.shape) for lin in net.linears] == [(30, 64), (20, 30), (10, 20)]


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"architecture": "8C3-MX2-32"}, r"architecture: architecture token 'MX2' is not"),
        ({"architecture": "8C3-32", "hidden": (50,)}, "give hidden or architecture, not both"),
        ({"architecture": "32-8C3"}, "token '8C3' comes after a dense layer"),
        ({"architecture": ""}, "architecture is empty"),
    ],
)
def test_bad_architecture_options_fail_in_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match) as info:
        BaselineOptions(method="binaryconnect", **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("arch", "match"),
    [
        ("MP2-16", "architecture token 'MP2' comes first"),
        ("4C9-16", "a 9x9 kernel does not fit its 8x8 input"),
        ("4C5-MP2-MP2-MP2-16", "'MP2': a 2x2 pool does not fit its 1x1 input"),
    ],
)
def test_networks_that_do_not_fit_fail_in_one_line(arch, match, tmp_path):
    with pytest.raises(ValueError, match=match) as info:
        train_baseline(BaselineOptions(method="bp", architecture=arch), tmp_path / "r")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "r" / "options.json").exists()


def test_conv_layers_need_images_for_every_method(tmp_path):
    opts = BaselineOptions(method="binarynet", architecture=ARCH, filters="sobel")
    with pytest.raises(ValueError, match="conv layers need images") as info:
        train_baseline(opts, tmp_path / "r")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "r" / "options.json").exists()
    with pytest.raises(ValueError, match="conv layers need the images' shape"):
        build_model(64, 10, BaselineOptions(method="bp", architecture=ARCH), None)


def test_architecture_is_a_sweep_key_of_the_baselines():
    from ebprop import baselines, runs
    from ebprop.sweep.experiment import parse_experiment

    text = f"""
[settings]
dataset = "digits"
epochs = 1
architecture = "{ARCH}"
seed = 0
[[grid]]
method = ["bp", "binaryconnect", "binarynet"]
"""
    specs = parse_experiment(text, methods={**runs.METHODS, **baselines.METHODS}).runs
    assert [r.name for r in specs] == [
        f"bp-real-a{ARCH}-f_none-do1-relu-hd1-s0",
        f"binaryconnect-binary-a{ARCH}-f_none-do1-relu-hd1-s0",
        f"binarynet-binary-a{ARCH}-f_none-do1-sign-hd1-s0",
    ]
    assert all(r.options["architecture"] == ARCH for r in specs)


# ---------------------------------------------------------------------------------- learning
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("convruns")
    out = {}
    for method in ("bp", "binaryconnect", "binarynet"):
        opts = BaselineOptions(method=method, learning_rate=0.01, seed=1, **LEARN)
        out[method] = (base / method, train_baseline(opts, base / method, threads=1), opts)
    return out


@pytest.mark.parametrize(
    ("method", "bound"), [("bp", 0.1), ("binaryconnect", 0.15), ("binarynet", 0.3)]
)
def test_each_method_learns_a_conv_net_on_the_digits(runs, method, bound):
    folder, summary, opts = runs[method]
    assert summary["finished"] and summary["epochs_run"] == 6
    assert summary["test_error"] < bound  # chance is 0.9
    stored = json.loads((folder / "options.json").read_text())
    assert stored["architecture"] == ARCH and stored["method"] == method
    # 8x8x1 → 8C3 6x6x8 → MP2 3x3x8 → 32 → 10
    assert summary["n_weights"] == 9 * 8 + 72 * 32 + 32 * 10
    assert (folder / "model.npz").exists() == (method == "binarynet")
    # the exported size, as for EBP: rows of n_in bits padded to 64-bit words, float32 biases
    words = [(8, 9), (32, 72), (10, 32)]  # (units, inputs) of each weighted layer
    expect = sum(n * -(-k // 64) * 8 + 4 * n for n, k in words)
    assert summary.get("bytes_deployed") == (expect if method == "binarynet" else None)


def test_resume_continues_a_conv_baseline(runs, tmp_path):
    _, summary, opts = runs["binaryconnect"]
    short = BaselineOptions.from_dict(opts.to_dict() | {"epochs": 3})
    train_baseline(short, tmp_path / "r", threads=1)
    resumed = train_baseline(opts, tmp_path / "r", resume=True, threads=1)
    assert resumed["test_error"] == summary["test_error"]


# -------------------------------------------------------------------------- BinaryNet fold
def test_saved_conv_binarynet_is_its_sign_network(runs, tmp_path):
    """The run's model.npz (the best epoch's fold) is an EBP conv model whose EBP-D readout, the
    .ebpb and the compiled C export all give the run's test error."""
    folder, summary, opts = runs["binarynet"]
    loaded = load_model(folder / "model.npz")
    assert loaded.method == "binarynet"
    assert loaded.estimator.architecture == ARCH
    assert tuple(loaded.estimator.input_shape) == (8, 8, 1)
    data = load_features(opts)
    assert loaded.metadata["input"] == data.appearance and data.appearance is not None
    pred = loaded.estimator.predict(data.X_test, readout="deterministic")
    assert np.mean(pred != data.y_test) == summary["test_error"]
    res = CliRunner().invoke(
        main, ["export", str(folder / "model.npz"), "-o", str(tmp_path / "m.ebpb")]
    )
    assert res.exit_code == 0, res.output
    ds = load_dataset("digits")
    np.testing.assert_array_equal(PackedNetwork.load(tmp_path / "m.ebpb").predict(ds.X_test), pred)


def _fold_net(tmp_path_factory):
    """A conv BinaryNet trained 3 epochs on the digits, then its batch-norm scales given random
    signs (a zero among them) so that the fold must store units negated."""
    opts = BaselineOptions(
        method="binarynet", dataset="digits", architecture=FOLD_ARCH, epochs=3, batch_size=20,
        learning_rate=0.01, seed=2,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("fold") / "run"
    train_baseline(opts, out, threads=1)
    data = load_features(opts)
    net = build_model(64, 10, opts, data.preprocessor, data.input_shape)
    _, z = RunFolder(out).read_checkpoint(key="meta")
    net.load_state_dict(
        {k[6:]: torch.from_numpy(v) for k, v in z.items() if k.startswith("model/")}
    )
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for bn in net.norms:
            signs = torch.where(torch.rand(bn.weight.shape, generator=g) < 0.5, -1.0, 1.0)
            bn.weight.mul_(signs)
            bn.weight[0] = 0.0  # a constant unit
    return net.eval(), data


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    net, data = _fold_net(tmp_path_factory)
    return net, data, net.fold()


def _eval_module_reference(net: BinaryConvNet, X: np.ndarray) -> np.ndarray:
    """Argmax of torch's standard eval-mode modules in float64 on the features x = p/m:
    conv2d, max_pool2d, BatchNorm, sign; the network's own test-time code is not used."""
    F = torch.nn.functional
    net = net.double()
    h = torch.from_numpy(X.astype(np.float64)).reshape(-1, 8, 8, 1).permute(0, 3, 1, 2)
    with torch.no_grad():
        for i, m in enumerate(net.layers):
            w = torch.where(m.weight >= 0, 1.0, -1.0).double()
            if isinstance(m, torch.nn.Conv2d):
                z = F.conv2d(h, w, None, m.stride, m.padding)
            else:
                z = F.linear(h.permute(0, 2, 3, 1).reshape(len(h), -1) if h.ndim == 4 else h, w)
            z = z * net.alphas[i] + (m.bias[:, None, None] if z.ndim == 4 else m.bias)
            for k in net.pools[i]:
                z = F.max_pool2d(z, k)
            if i == len(net.layers) - 1:
                net.float()
                return z.argmax(dim=1).numpy()
            h = torch.where(net.norms[i](z) >= 0, 1.0, -1.0).double()
    raise AssertionError


def test_conv_fold_is_exact_on_the_full_digits_test_split(folded):
    """Every test image: the folded EBP-D CNN (float readout and packed bits) gives exactly the
    torch test-time network's output values and classes, with units stored negated."""
    net, data, fold = folded
    assert any(f.any() for f in fold.flipped) and not all(f.all() for f in fold.flipped)
    assert [c.shape for c in fold.coefs] == [(9, 6), (54, 8), (32, 16), (16, 10)]
    X = torch.from_numpy(data.X_test)
    torch_out = net.sign_outputs(X).numpy()
    torch_pred = net.sign_predict(X)
    assert len(torch_pred) == len(data.y_test) == len(load_dataset("digits").y_test) == 599
    np.testing.assert_array_equal(_eval_module_reference(net, data.X_test), torch_pred)
    from ebprop.baselines.binarynet import folded_estimator
    from ebprop.core.predict import predict_deterministic

    est = folded_estimator(fold, data.classes, "float32")
    est_out = predict_deterministic(est.network(), data.X_test)
    np.testing.assert_array_equal(est_out, torch_out)  # bit for bit, the output layer included
    np.testing.assert_array_equal(est.predict(data.X_test, readout="deterministic"), torch_pred)
    packed = PackedNetwork.from_estimator(est, data.preprocessor)
    ds = load_dataset("digits")
    np.testing.assert_array_equal(packed.predict(ds.X_test), torch_pred)
    # a live network, not a constant one: its classes still depend on the image
    assert len(np.unique(torch_pred)) >= 5


@requires_cc
def test_c_export_of_a_conv_binarynet_predicts_as_torch(folded, tmp_path):
    net, data, fold = folded
    from ebprop.baselines.binarynet import folded_estimator

    est = folded_estimator(fold, data.classes, "float32")
    model = PackedNetwork.from_estimator(est, data.preprocessor).model
    ds = load_dataset("digits")
    want = net.sign_predict(torch.from_numpy(data.X_test))
    np.testing.assert_array_equal(c_predict(model, ds.X_test, tmp_path / "c"), want)


def test_conv_fold_on_symmetric_pixels_needs_an_unpadded_first_conv(tmp_path):
    """Pixels scaled to [-1, 1]: with an unpadded first conv the fold is exact (every digits
    test image, float EBP-D and .ebpb, as exported); a padded first conv (a padded tap, x = 0, is
    no pixel) cannot fold, and its run writes no model.npz."""
    padded = BinaryConvNet((8, 8, 1), parse_architecture("4C3p1-16"), 10, pixels=("symmetric", 16))
    assert padded.pixels is None
    with pytest.raises(ValueError, match="fold needs pixel features scaled unit, or symmetric"):
        padded.fold()
    opts = BaselineOptions(
        method="binarynet", dataset="digits", architecture="4C3p1-16", epochs=1,
        scaling="symmetric",
    )  # fmt: skip
    summary = train_baseline(opts, tmp_path / "p", threads=1)
    assert summary["finished"] and not (tmp_path / "p" / "model.npz").exists()
    opts = BaselineOptions(
        method="binarynet", dataset="digits", architecture="6C3-MP2-16", epochs=3,
        batch_size=20, learning_rate=0.01, scaling="symmetric",
    )  # fmt: skip
    summary = train_baseline(opts, tmp_path / "s", threads=1)
    loaded = load_model(tmp_path / "s" / "model.npz")
    data = load_features(opts)
    pred = loaded.estimator.predict(data.X_test, readout="deterministic")
    assert np.mean(pred != data.y_test) == summary["test_error"] < 0.5
    net = build_model(64, 10, opts, data.preprocessor, data.input_shape)
    _, z = RunFolder(tmp_path / "s").read_checkpoint(key="meta")
    net.load_state_dict(
        {k[6:]: torch.from_numpy(v) for k, v in z.items() if k.startswith("model/")}
    )
    with torch.no_grad():  # negative scales too, so that the first layer stores units negated
        net.norms[0].weight[::2] *= -1.0
    net.eval()
    from ebprop.baselines.binarynet import folded_estimator

    fold = net.fold()
    assert fold.flipped[0].any()
    want = net.sign_predict(torch.from_numpy(data.X_test))
    np.testing.assert_array_equal(_eval_module_reference(net, data.X_test), want)  # on x itself
    est = folded_estimator(fold, data.classes, "float32")
    np.testing.assert_array_equal(est.predict(data.X_test, readout="deterministic"), want)
    packed = PackedNetwork.from_estimator(est, data.preprocessor)
    np.testing.assert_array_equal(packed.predict(load_dataset("digits").X_test), want)


# ---------------------------------------------------------------------------- command line
def test_train_method_and_arch_on_the_command_line(tmp_path):
    """``ebprop train --method binaryconnect --arch ...`` trains the baselines' conv network,
    as the sweep key would, and ``--resume`` continues it."""
    out = tmp_path / "bc"
    args = ["train", "--method", "binaryconnect", "--arch", "4C3-MP2-16", "--epochs", "1"]
    res = CliRunner().invoke(
        main, [*args, "--batch-size", "50", "--no-batch-norm", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "training binaryconnect net (hidden 4C3-MP2-16) on digits for 1 epochs" in res.output
    assert "epoch   1/1" in res.output and "test error  BC " in res.output
    stored = json.loads((out / "options.json").read_text())
    assert stored["method"] == "binaryconnect" and stored["architecture"] == "4C3-MP2-16"
    assert stored["batch_size"] == 50 and stored["batch_norm"] is False
    assert stored["learning_rate"] == 1e-3  # the baselines' default, not given
    want = BaselineOptions(
        method="binaryconnect", architecture="4C3-MP2-16", epochs=1, batch_size=50,
        batch_norm=False,
    )  # fmt: skip
    assert stored == want.to_dict()
    res = CliRunner().invoke(main, ["train", "--resume", str(out), "--epochs", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output[res.output.index("{") :])["epochs_run"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "bp", "--weights", "real"], "only EBP runs take --weights; --method bp"),
        (
            ["--activation", "tanh"],
            "--activation: for --method bp, binaryconnect or binarynet only",
        ),
        (["--method", "binarynet", "--hidden", "20", "--arch", "4C3-16"], "not both"),
        (["--method", "bp", "--arch", "4C3-MQ2"], "architecture token 'MQ2' is not"),
        (["--method", "bp", "--from", "x"], "--from continues EBP runs only"),
    ],
)
def test_train_method_errors_are_one_line(args, message, tmp_path):
    res = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    error = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(error) == 1 and message in error[0]
    assert not (tmp_path / "r").exists()


def test_every_baseline_option_field_has_a_train_option_with_help():
    import dataclasses

    from ebprop.cli.train import train as train_command

    by_name = {p.name: p for p in train_command.params}
    for f in dataclasses.fields(BaselineOptions):
        if f.name == "extra":
            continue
        assert f.name in by_name, f"BaselineOptions.{f.name} has no ebprop train option"
        assert by_name[f.name].help and len(by_name[f.name].help) > 10, f.name


def test_two_class_conv_binarynet_uses_one_output_unit_and_folds_exactly(tmp_path):
    """Two classes (an .npz of 8x8 images): one output unit, the logistic loss; the folded
    model's classes on every image equal the torch test-time network's, in float and bits."""
    ds = load_dataset("digits")
    keep = ds.y_train < 2
    path = tmp_path / "two.npz"
    np.savez(path, X_train=ds.X_train[keep], y_train=ds.y_train[keep], max_value=16)
    opts = BaselineOptions(
        method="binarynet", dataset=str(path), architecture="4C3p1-MP2-8", epochs=4,
        batch_size=10, learning_rate=0.01,
    )  # fmt: skip
    summary = train_baseline(opts, tmp_path / "r", threads=1)
    assert summary["test_error"] < 0.2  # chance is 0.5
    loaded = load_model(tmp_path / "r" / "model.npz")
    assert loaded.metadata["architecture"]["sizes"][-1] == 1
    data = load_features(opts)
    net = build_model(64, 2, opts, data.preprocessor, data.input_shape)
    _, z = RunFolder(tmp_path / "r").read_checkpoint(key="meta")
    net.load_state_dict(
        {k[6:]: torch.from_numpy(v) for k, v in z.items() if k.startswith("model/")}
    )
    from ebprop.baselines.binarynet import folded_estimator

    images = ds.X_train[keep]
    feats = data.preprocessor.transform(images, np.float32)
    want = data.classes[net.eval().sign_predict(torch.from_numpy(feats))]
    est = folded_estimator(net.fold(), data.classes, "float32")
    np.testing.assert_array_equal(est.predict(feats, readout="deterministic"), want)
    packed = PackedNetwork.from_estimator(est, data.preprocessor)
    np.testing.assert_array_equal(packed.predict(images), want)


def test_report_reads_an_older_binarynet_runs_size_from_its_model(runs, tmp_path):
    # a summary written before runs recorded bytes_deployed: report takes it from model.npz
    folder, summary, _ = runs["binarynet"]
    old = tmp_path / "sweep" / folder.name
    shutil.copytree(folder, old)
    stored = json.loads((old / "summary.json").read_text())
    del stored["bytes_deployed"]
    (old / "summary.json").write_text(json.dumps(stored))
    res = CliRunner().invoke(main, ["report", str(tmp_path / "sweep"), "--format", "csv"])
    assert res.exit_code == 0, res.output
    row = next(csv.DictReader(io.StringIO(res.output)))
    assert int(row["bytes_deployed"]) == summary["bytes_deployed"] > 0

"""Deploy binary EBP-D networks as bits: packing, a popcount runtime, a ``.ebpb`` file, C export.

>>> from ebprop.packed import PackedNetwork
>>> net = PackedNetwork.from_estimator(est, preprocessor)   # a fitted binary EBPClassifier
>>> net.save("model.ebpb"); net = PackedNetwork.load("model.ebpb")
>>> net.predict(raw_uint8_images)  # == est.predict(features, readout="deterministic")
"""

from .export_c import write_c_model, write_c_project
from .fileformat import FORMAT_VERSION, PackedModel, read_packed, write_packed
from .runtime import PackedNetwork, pack_conv_network, pack_estimator

__all__ = [
    "FORMAT_VERSION",
    "PackedModel",
    "PackedNetwork",
    "pack_conv_network",
    "pack_estimator",
    "read_packed",
    "write_c_model",
    "write_c_project",
    "write_packed",
]

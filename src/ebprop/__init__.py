"""ebprop: Expectation Backpropagation for binary- and real-weight neural networks.

>>> import ebprop
>>> clf = ebprop.EBPClassifier().fit(X, y)          # doctest: +SKIP
>>> ebprop.save_model("model.npz", clf)              # doctest: +SKIP
>>> model = ebprop.load_model("model.npz")           # .estimator, .preprocessor, .metadata
"""

from ._version import __version__
from .estimator import EBPClassifier
from .persist import LoadedModel, load_model, save_model

__all__ = ["EBPClassifier", "LoadedModel", "__version__", "load_model", "save_model"]

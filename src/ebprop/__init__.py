"""ebprop: Expectation Backpropagation for binary- and real-weight neural networks."""

from ._version import __version__
from .estimator import EBPClassifier

__all__ = ["EBPClassifier", "__version__"]

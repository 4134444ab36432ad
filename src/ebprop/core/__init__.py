"""The EBP algorithm over NumPy arrays (NumPy and scipy.special only; no I/O).

Read :mod:`.step` first: it composes :mod:`.forward`, :mod:`.backward` and :mod:`.update`.
"""

from .architecture import format_architecture, layer_shapes, parse_architecture
from .backward import backward, hidden_delta, output_delta
from .convnet import ConvNetwork, conv_forward, conv_step_inplace, init_conv_network
from .families import BinaryWeights, RealWeights, WeightFamily, dropout_nu, make_family
from .forward import LayerStats, forward
from .network import Network, init_network
from .overshoot import overshoot_gain
from .predict import (
    class_log_probabilities,
    output_z,
    predict_deterministic,
    predict_probabilistic,
)
from .refit import refit_deterministic_biases
from .refit_conv import refit_conv_biases
from .reinforce import AUTO as AUTO_REINFORCEMENT
from .reinforce import (
    Reinforcement,
    ReinforcementWarning,
    never_starts,
    parse_reinforcement,
    resolve_auto,
    same_request,
    start_schedule,
    stored_form,
)
from .step import step_inplace
from .update import PARAMETER_BOUND, diverged, update_inplace

__all__ = [
    "AUTO_REINFORCEMENT",
    "PARAMETER_BOUND",
    "Reinforcement",
    "parse_reinforcement",
    "never_starts",
    "ReinforcementWarning",
    "resolve_auto",
    "same_request",
    "start_schedule",
    "stored_form",
    "diverged",
    "BinaryWeights",
    "ConvNetwork",
    "conv_forward",
    "conv_step_inplace",
    "format_architecture",
    "init_conv_network",
    "layer_shapes",
    "parse_architecture",
    "LayerStats",
    "Network",
    "RealWeights",
    "WeightFamily",
    "backward",
    "class_log_probabilities",
    "dropout_nu",
    "forward",
    "hidden_delta",
    "init_network",
    "make_family",
    "output_delta",
    "output_z",
    "overshoot_gain",
    "predict_deterministic",
    "predict_probabilistic",
    "refit_conv_biases",
    "refit_deterministic_biases",
    "step_inplace",
    "update_inplace",
]

"""Training runs in a folder: the options vocabulary, the feature loader, the run-folder
protocol shared by every method, and the EBP run (:func:`train_run`).

========================== =========================================================
:mod:`.options`            DataOptions, RunOptions, TrainOptions (one name per setting)
:mod:`.data`               load_features: options → train/validation/test features
:mod:`.folder`             RunFolder: options, checkpoint, metrics, summary; resume,
                           best-epoch and patience rules
:mod:`.ebp`                train_run: an EBP run over :class:`ebprop.trainer.Trainer`
:mod:`.warm`               warm_start: a new run continuing a finished one
:mod:`.method`             TrainingMethod: an options class and a train function, as a
                           sweep runs them; METHODS (EBP)
========================== =========================================================
"""

from .data import Features, check_features, load_features
from .ebp import CHECKPOINT_VERSION, load_options, load_summary, train_run
from .folder import RunFolder, best_record, patience_exhausted, summary_record
from .method import METHODS, TrainingMethod
from .options import DataOptions, RunOptions, TrainOptions, nullable_keys, option_keys
from .warm import WARM_START_CHANGES, warm_start

__all__ = [
    "CHECKPOINT_VERSION",
    "DataOptions",
    "METHODS",
    "Features",
    "RunFolder",
    "RunOptions",
    "TrainOptions",
    "TrainingMethod",
    "best_record",
    "check_features",
    "load_features",
    "load_options",
    "load_summary",
    "nullable_keys",
    "option_keys",
    "patience_exhausted",
    "summary_record",
    "train_run",
    "warm_start",
    "WARM_START_CHANGES",
]

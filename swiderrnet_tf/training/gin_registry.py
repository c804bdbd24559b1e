"""Importing this module registers every gin name, the trainer's included.

`configurables` registers all but the trainer's names; `trainer` registers
`train` and, through `train_loop`, `build_optimizer` and
`build_momentum_optimizer` (`gin_config.TRAINING_ONLY`). The train command
imports this module before `gin_config.parse`; programs that do not train
import `configurables` alone and skip those names.
"""

from swiderrnet_tf import configurables  # noqa: F401
from swiderrnet_tf.training import trainer  # noqa: F401

"""Importing this module registers every name a gin file of swiderrnet_tf may use.

`configurables` registers the factories (model, data, loss, ...); `train` and
`evaluate` are the configurable entry points. Programs import this module
before `gin_config.parse`, which itself imports no entry point (the trainer
uses `gin_config` to write its configs).
"""

from swiderrnet_tf.training import configurables  # noqa: F401
from swiderrnet_tf.training import eval_loop  # noqa: F401
from swiderrnet_tf.training import trainer  # noqa: F401

"""Runs saved models under the JAX backend (a helper program for the parity test).

Usage: KERAS_BACKEND=jax python jax_forward.py DIR
DIR holds `<name>_config.json`, `<name>.weights.h5` and `inputs.npy`; writes
`<name>_jax.npz` with every output. The model is built without running its
initializers (each costs a JAX compilation) and run once under `jax.jit`.
"""

import json
import pathlib
import sys

import jax
import keras
import numpy as np

import swiderrnet_tf.meta_arch  # noqa: F401  (registers the serialisable classes)


def main(directory: str) -> None:
    assert keras.backend.backend() == "jax", keras.backend.backend()
    directory = pathlib.Path(directory)
    images = np.load(directory / "inputs.npy")
    for config_path in sorted(directory.glob("*_config.json")):
        name = config_path.name[: -len("_config.json")]
        with keras.StatelessScope(initialize_variables=False):
            model = keras.saving.deserialize_keras_object(json.loads(config_path.read_text()))
        model.load_weights(directory / f"{name}.weights.h5")
        weights = model.weights

        @jax.jit
        def forward(values, x, model=model, weights=weights):
            mapping = list(zip(weights, values, strict=True))
            with keras.StatelessScope(state_mapping=mapping, initialize_variables=False):
                return model(x, training=False)

        outputs = forward([w.value for w in weights], images)
        np.savez(directory / f"{name}_jax.npz", **{k: np.asarray(v) for k, v in outputs.items()})


if __name__ == "__main__":
    main(sys.argv[1])

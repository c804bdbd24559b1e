"""Runs an exported SavedModel with plain TensorFlow (a helper program for the export tests).

Usage: python plain_tf_serving.py SAVED_MODEL DIR
Imports nothing but TensorFlow and numpy. Reads `DIR/inputs.npz` (`images`,
uint8) and the encoded files `DIR/*.png|jpg`; writes `DIR/outputs.npz` with
every output of `serving_default` on the images (`images/<key>`), of
`serving_bytes` on each file (`<file name>/<key>`) and of `serving_default`
on `tf.io.decode_image` of each file (`<file name>/decoded/<key>`; its
pixels as `<file name>/decoded/pixels`), and
`DIR/errors.json` with the error message of each bad input.
"""

import json
import pathlib
import sys

import numpy as np
import tensorflow as tf


def _error(fn, **inputs) -> str:
    try:
        fn(**inputs)
    except tf.errors.InvalidArgumentError as e:
        return e.message
    return "no error"


def main(saved_model: str, directory: str) -> None:
    directory = pathlib.Path(directory)
    loaded = tf.saved_model.load(saved_model)
    serve = loaded.signatures["serving_default"]
    serve_bytes = loaded.signatures["serving_bytes"]
    results = {}
    images = np.load(directory / "inputs.npz")["images"]
    for key, value in serve(images=tf.constant(images)).items():
        results[f"images/{key}"] = value.numpy()
    encoded = sorted(p for p in directory.iterdir() if p.suffix in (".png", ".jpg"))
    for path in encoded:
        data = path.read_bytes()
        for key, value in serve_bytes(image_bytes=tf.constant([data, data])).items():
            results[f"{path.name}/{key}"] = value.numpy()
        decoded = tf.io.decode_image(data, channels=3, expand_animations=False)[None]
        results[f"{path.name}/decoded/pixels"] = decoded.numpy()
        for key, value in serve(images=decoded).items():
            results[f"{path.name}/decoded/{key}"] = value.numpy()
    np.savez(directory / "outputs.npz", **results)
    png = encoded[0].read_bytes()
    small = tf.io.encode_png(tf.zeros([5, 4, 3], tf.uint8)).numpy()
    errors = {
        "channels": _error(serve, images=tf.zeros([1, 8, 8, 4], tf.uint8)),
        "rank": _error(serve, images=tf.zeros([8, 8, 3], tf.uint8)),
        "empty_image": _error(serve, images=tf.zeros([1, 0, 8, 3], tf.uint8)),
        "too_large": _error(serve, images=tf.zeros([1, 8, 100000, 3], tf.uint8)),
        "empty_bytes": _error(serve_bytes, image_bytes=tf.constant([png, b""])),
        "not_an_image": _error(serve_bytes, image_bytes=tf.constant([b"%PDF-1.4 hello"])),
        "no_bytes": _error(serve_bytes, image_bytes=tf.zeros([0], tf.string)),
        "sizes_differ": _error(serve_bytes, image_bytes=tf.constant([png, small])),
    }
    (directory / "errors.json").write_text(json.dumps(errors))
    imported = sorted(m for m in sys.modules if m.startswith(("swiderrnet_tf", "keras")))
    (directory / "modules.json").write_text(json.dumps(imported))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

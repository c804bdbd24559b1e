"""Where the training and evaluation records are, and preparing them when asked.

A config names a dataset (`dataset_name`, see `data.dataset_info`) and a data
folder whose TFRecords follow the dataset's split patterns (e.g.
`train-*.tfrecord`). A config may also name a `prepare_data_fn(data_dir)`, such
as `@ensure_dataset` for the built-in synthetic dataset; the chief runs it,
and the other workers wait for it. Without a data folder, such a config keeps
its data in `model_dir/data`.
"""

import os

from absl import logging


def resolve_data_dir(
    *,
    data_dir: str | None,
    prepare_data_fn,
    model_dir: str,
    chief: bool = True,
    barrier=None,
) -> str:
    """Returns the data folder, prepared if the config asks for it.

    Args:
      data_dir: The configured folder, or None.
      prepare_data_fn: Optional `fn(data_dir)` that creates the records.
      model_dir: The run's folder (default home of prepared data).
      chief: Whether this process prepares the data.
      barrier: Optional `agree(flag)` collective that makes the other workers
        wait until the chief is done.

    Raises:
      ValueError: If there is neither a data folder nor a way to prepare one,
        or the folder is an empty string.
    """
    if data_dir is not None and not str(data_dir).strip():
        raise ValueError("the data folder is an empty string; set DATA_DIR to a folder")
    if data_dir is None:
        if prepare_data_fn is None:
            raise ValueError(
                "no data folder: set data_dir (e.g. --gin_bindings='DATA_DIR=\"/data/x\"') "
                "or a prepare_data_fn"
            )
        data_dir = os.path.join(model_dir, "data")
    if prepare_data_fn is not None:
        if chief:
            logging.info("Preparing the data in %s", data_dir)
            prepare_data_fn(data_dir)
        if barrier is not None:
            barrier(False)
    return data_dir


def file_pattern(info, data_dir: str, split: str) -> str:
    """The TFRecord pattern of a split in `data_dir`."""
    return os.path.join(data_dir, info.split_pattern(split))

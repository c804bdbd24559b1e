"""Outputs that are complete or absent: temporary names renamed when done.

Every command writes its files through these helpers (local paths or any
file system `tf.io.gfile` knows, such as `gs://`): a file is written under
`{path}.tmp-{pid}` and renamed to `path` once closed (after an fsync on local
disks, so the rename never reaches the disk before the data), and removed
when writing fails, so a full disk or a killed job leaves no half-written file
under a final name. Failures raise `cli.FileAccessError` naming the path and
the cause.
"""

import contextlib
import os

import tensorflow as tf

from swiderrnet_tf import cli

TMP_INFIX = ".tmp-"


def temporary_path(path: str) -> str:
    """The name `path` is written under before it is complete."""
    return f"{path}{TMP_INFIX}{os.getpid()}"


def make_dirs(path: str, what: str = "folder") -> None:
    """Creates `path` and its parents.

    Raises:
      cli.FileAccessError: e.g. when a parent is a regular file.
    """
    with cli.file_access(path, f"create the {what}"):
        tf.io.gfile.makedirs(path)
        if not tf.io.gfile.isdir(path):
            raise FileExistsError(17, "exists and is not a folder", path)


def remove_quietly(path: str) -> None:
    """Removes a file if it is there; a leftover is better than hiding the first error."""
    try:
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)
    except cli.file_system_errors():
        pass


def commit(tmp_path: str, path: str) -> None:
    """Renames a closed temporary file to its final name (fsync first on local disks)."""
    if "://" not in tmp_path:
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
    tf.io.gfile.rename(tmp_path, path, overwrite=True)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w"):
    """Yields a `tf.io.gfile.GFile` whose content appears at `path` only when complete.

    Args:
      path: The final file.
      mode: `w` (text) or `wb`.

    Raises:
      cli.FileAccessError: When the file cannot be written (nothing is left
        at `path` or under the temporary name).
    """
    tmp_path = temporary_path(path)
    try:
        with cli.file_access(path, "write"):
            with tf.io.gfile.GFile(tmp_path, mode) as f:
                yield f
            commit(tmp_path, path)
    except BaseException:
        remove_quietly(tmp_path)
        raise

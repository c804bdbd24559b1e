"""How every command ends on a user error: one line on stderr, exit status 2.

Every `main` under `swiderrnet_tf` runs its work through `run_main`. A user
error is a `ValueError` (bad settings or data; the project's own errors
subclass it and name the file or the setting) or a file-system error: an
`OSError`, or one of TensorFlow's `tf.errors.OpError`s that file systems raise
(`tf.io.gfile` and the TFRecord, SavedModel and checkpoint readers and
writers): a folder whose parent is a regular file (`FailedPreconditionError`),
permission denied, a full disk (`ResourceExhaustedError`), a `gs://` path
without credentials or network. Anything else is a bug and keeps its
traceback. The traceback of a user error is logged at debug level
(`--verbosity=1` shows it).

`file_access(path, action)` turns the file-system errors raised inside it into
a `FileAccessError` that names the path and the cause, e.g.
`out/panoptic/a.png: cannot write: No space left on device`.

This module does not import TensorFlow (the grid search runs where only JAX is
installed); TensorFlow's errors are recognised once something else imported it.
"""

import contextlib
import re
import sys

from absl import logging

EXIT_USER_ERROR = 2
# tf.errors.OpError subclasses that file systems raise. InvalidArgumentError,
# InternalError and the like stay tracebacks: they come from bugs.
_FILE_SYSTEM_OP_ERRORS = (
    "AlreadyExistsError",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "NotFoundError",
    # A write past the file-size limit (EFBIG), as TensorFlow reports it.
    "OutOfRangeError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
)
# What an OpError without a message (TensorFlow raises some) means.
_CAUSE_OF_EMPTY = {
    "PermissionDeniedError": "permission denied",
    "ResourceExhaustedError": "no space left (disk full or quota exceeded)",
    "NotFoundError": "not found",
    "UnauthenticatedError": "no credentials",
    "UnavailableError": "the storage service is unavailable",
}


class FileAccessError(ValueError):
    """A file or folder that cannot be read, created or written; the message names it."""


def file_system_errors() -> tuple[type[BaseException], ...]:
    """`OSError` and, once TensorFlow is imported, its file-system `OpError`s."""
    errors: tuple[type[BaseException], ...] = (OSError,)
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "errors"):
        errors += tuple(getattr(tf.errors, name) for name in _FILE_SYSTEM_OP_ERRORS)
    return errors


# Where in TensorFlow's graph an error arose: `{{function_node ...}}`, `[Op:Name] name: x`.
_TF_NODE_NOTES = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[^\]]*\]( name: ?\S*)?")


def one_line(text: str) -> str:
    """Joins a multi-line message, dropping TensorFlow's notes on graph nodes and gin's on calls."""
    lines = [line.strip() for line in str(text).splitlines()]
    kept = [
        line for line in lines if line and not line.startswith(("[[", "In call to configurable"))
    ]
    return _TF_NODE_NOTES.sub("", " ".join(kept)).strip()


def cause(error: BaseException) -> str:
    """The reason of a file-system error in a few words.

    `OSError`: its `strerror` (`No space left on device`); an `OpError`: its
    message (which usually names the path too), or what its class means when
    the message is empty.
    """
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    message = one_line(getattr(error, "message", None) or str(error))
    if message:
        return message
    name = type(error).__name__
    return _CAUSE_OF_EMPTY.get(name, name)


@contextlib.contextmanager
def file_access(path: str, action: str):
    """Turns file-system errors inside into a `FileAccessError` naming `path`.

    Args:
      path: The file or folder being worked on.
      action: What was being done, completing "cannot ...", e.g.
        `"create the output folder"`.

    Raises:
      FileAccessError: `"{path}: cannot {action}: {cause}"`.
    """
    try:
        yield
    except file_system_errors() as e:
        raise FileAccessError(f"{path}: cannot {action}: {cause(e)}") from e


def error_line(error: BaseException) -> str:
    """The single line a command prints for a user error."""
    if isinstance(error, ValueError):
        return f"error: {one_line(str(error)) or type(error).__name__}"
    where = getattr(error, "filename", None)
    return f"error: {where}: {cause(error)}" if where else f"error: {cause(error)}"


def run_main(work, *, user_errors=()) -> int:
    """Runs a command's work; returns its exit status.

    Args:
      work: A function of no arguments (e.g. a `functools.partial`) returning
        an int exit status, or anything else (None, a result) for success.
      user_errors: More exception types that are user errors of this command.

    Returns:
      The work's status (0 when it returned no int), or `EXIT_USER_ERROR`
      after printing `error_line` on stderr when it raised a user error (see
      the module docstring).
    """
    try:
        status = work()
    except (ValueError, *file_system_errors(), *user_errors) as e:
        logging.debug("stopped on a user error", exc_info=True)
        sys.stdout.flush()
        print(error_line(e), file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return status if isinstance(status, int) else 0

"""Every command's user errors: one line on stderr naming the path and the cause, status 2."""

import errno
import functools
import os

import pytest
import tensorflow as tf

from swiderrnet_tf import cli
from swiderrnet_tf import fileio


def _raise(error):
    raise error


def test_file_system_errors_give_one_line_and_status_2(capsys):
    cases = [
        # (error, what the line must hold)
        (
            tf.errors.FailedPreconditionError(
                None, None, "Error executing an HTTP request\n\t when reading gs://b/x"
            ),
            "error: Error executing an HTTP request when reading gs://b/x",
        ),
        # Where in the graph it happened is noise to the user.
        (
            tf.errors.DataLossError(
                None, None, "{{function_node __wrapped__X}} corrupted record at 0 [Op:X] name: "
            ),
            "error: corrupted record at 0",
        ),
        # TensorFlow raises some without a message (a full disk found at close).
        (tf.errors.ResourceExhaustedError(None, None, ""), "error: no space left"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/out/a.png"),
            "error: /data/out/a.png: No space left on device",
        ),
        (ValueError("train.crop_size must be (height, width)"), "error: train.crop_size"),
    ]
    for error, expected in cases:
        assert cli.run_main(functools.partial(_raise, error)) == cli.EXIT_USER_ERROR
        lines = capsys.readouterr().err.splitlines()
        assert lines == [expected] or (len(lines) == 1 and lines[0].startswith(expected)), lines


def test_bugs_keep_their_traceback_and_statuses_pass_through():
    with pytest.raises(tf.errors.InvalidArgumentError):
        cli.run_main(
            functools.partial(_raise, tf.errors.InvalidArgumentError(None, None, "shape mismatch"))
        )
    with pytest.raises(KeyError):
        cli.run_main(functools.partial(_raise, KeyError("x")))
    assert cli.run_main(functools.partial(_raise, KeyError("x")), user_errors=(KeyError,)) == 2
    assert cli.run_main(lambda: 143) == 143
    assert cli.run_main(lambda: {"images": []}) == 0


def test_a_folder_under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("")
    target = str(tmp_path / "file" / "out")
    with pytest.raises(cli.FileAccessError) as error:
        fileio.make_dirs(target, "output folder")
    assert str(error.value).startswith(f"{target}: cannot create the output folder: ")
    assert "not a directory" in str(error.value)


def test_atomic_write_leaves_nothing_when_writing_fails(tmp_path):
    path = tmp_path / "result.json"
    with pytest.raises(RuntimeError), fileio.atomic_write(str(path)) as f:
        f.write("{")
        raise RuntimeError("stopped half-way")
    assert os.listdir(tmp_path) == []
    with fileio.atomic_write(str(path)) as f:
        f.write("{}")
    assert os.listdir(tmp_path) == ["result.json"] and path.read_text() == "{}"

"""A wheel installs anywhere and runs the demo; console scripts list their own flags."""

import os
import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap

ROOT = pathlib.Path(__file__).parents[1]
# A few steps of the demo on a handful of images: enough to train, save,
# evaluate and predict through the installed package.
DEMO_BINDINGS = (
    "ensure_dataset.num_train = 8",
    "ensure_dataset.num_val = 2",
    "train.batch_size = 2",
    "train.num_steps = 2",
    "train.steps_per_loop = 1",
    "train.warmup_steps = 0",
    "evaluate.batch_size = 2",
)


def _clean_env(**extra) -> dict:
    """This environment without the worktree on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _run(command, cwd, env=None, check=True):
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env or _clean_env(), capture_output=True, text=True
    )
    if check:
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    return done


def _fresh_venv(path: pathlib.Path) -> pathlib.Path:
    """A venv without pip that sees this environment's packages (TensorFlow, ...).

    The `.pth` line only adds those folders to `sys.path`; their own `.pth`
    files (the editable install of the checkout) are not run, so the package
    comes from the wheel alone.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], path
    ).stdout.strip()
    ours = [p for p in site.getsitepackages() if os.path.isdir(p)]
    ours.append(sysconfig.get_paths()["purelib"])
    pathlib.Path(purelib, "parent_environment.pth").write_text("\n".join(dict.fromkeys(ours)))
    return path / "bin"


def test_wheel_installs_and_runs_the_demo_from_any_directory(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "swiderrnet_tf",
        source / "swiderrnet_tf",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # Offline: setuptools and wheel of this environment, no index, no isolation.
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-q", "-w", tmp_path / "dist", source],
        tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("swiderrnet_tf-*.whl")
    bin_dir = _fresh_venv(tmp_path / "venv")
    _run(
        [sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "-q"]
        + ["--no-deps", "--no-index", wheel],
        tmp_path,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = _run(
        [bin_dir / "python", "-c", "import swiderrnet_tf; print(swiderrnet_tf.__file__)"], work
    )
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout
    # README's demo command, as a console script, in a directory without the checkout.
    demo = _run(
        [bin_dir / "swiderrnet-train", "--gin_file=gin_configs/demo.gin"]
        + [f"--gin_bindings={b}" for b in DEMO_BINDINGS],
        work,
    )
    assert "PQ" in demo.stdout, demo.stdout[-2000:]
    assert (work / "runs" / "demo" / "ckpt-2.index").exists()
    # The run folder predicts as it is, through the installed predict command.
    shutil.copy(ROOT / "tests/testdata/deeplab2_swidernet_tiny/input.png", work / "photo.png")
    _run(
        [bin_dir / "swiderrnet-predict", "--model=runs/demo", "--images=photo.png"]
        + ["--output_dir=predictions"],
        work,
    )
    assert (work / "predictions" / "panoptic" / "photo.png").exists()
    assert (work / "predictions" / "panoptic.json").exists()


def test_console_scripts_list_their_own_flags_in_help(tmp_path):
    # A command run through `cli.console_main`, from a wrapper script as pip
    # writes one: --help must list the command's flags, not only --helpfull.
    module = tmp_path / "tiny_command.py"
    module.write_text(
        textwrap.dedent(
            '''
            """Says hello."""
            from absl import flags

            def define_flags():
                flags.DEFINE_string("output_dir", None, "Where the greeting goes.")
                flags.DEFINE_alias("output", "output_dir")

            def main(argv):
                print("hello", flags.FLAGS.output_dir)
            '''
        )
    )
    wrapper = tmp_path / "tiny-command"
    wrapper.write_text(
        "import sys\nfrom swiderrnet_tf import cli\nsys.exit(cli.console_main('tiny_command'))\n"
    )
    env = _clean_env(PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    shown = _run([sys.executable, wrapper, "--help"], tmp_path, env=env, check=False)
    assert "--output_dir: Where the greeting goes." in shown.stdout, shown.stdout
    assert "Says hello." in shown.stdout
    ran = _run([sys.executable, wrapper, "--output=there"], tmp_path, env=env)
    assert ran.stdout.strip() == "hello there"  # the old spelling still works

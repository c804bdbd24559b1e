"""Finds, parses and checks gin files; writes the configs a run used.

Gin files name what is built (model, data, loss, schedule); flags name where
things run. `--gin_file` paths and `include` lines are looked up in the
current directory first, then in the repository that holds `gin_configs/`, so
`--gin_file=gin_configs/demo.gin` works from any directory.

`check_config` runs before any work: it names every missing required value
(including macros left at `%gin.REQUIRED`, such as `DATA_DIR`) and unknown
backbone options. Unknown configurables and parameters already fail while
parsing (see `configurables`).
"""

import inspect
import os
import pathlib
import re

import gin
import tensorflow as tf
from absl import logging

from swiderrnet_tf.training import configurables

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG_FILE = "config.gin"
OPERATIVE_CONFIG_FILE = "operative_config.gin"
# Factories the entry points call, whose bound values are checked too.
FACTORIES = (
    "build_panoptic_deeplab",
    "build_dataset",
    "PanopticLoss",
    "ensure_dataset",
    "build_classifier",
    "build_classification_dataset",
    "ClassificationLoss",
    "ensure_classification_dataset",
)
_BINDING = re.compile(r"^([A-Za-z_][\w./]*) = (.*)$")
# Bindings that shape the network, listed first when configs differ.
_NETWORK_BINDINGS = (
    "build_panoptic_deeplab.",
    "create_backbone.",
    "BACKBONE",
    "DATASET",
    "train.model_fn",
    "train.dataset_name",
    "train.mixed_precision",
)


def resolve_gin_file(path: str) -> str:
    """Returns an existing gin file for `path`: as given, or under the repository.

    Raises:
      FileNotFoundError: Naming the places that were tried.
    """
    candidates = [pathlib.Path(path)]
    if not os.path.isabs(path):
        candidates.append(REPO_ROOT / path)
        candidates.append(REPO_ROOT / "gin_configs" / path)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    if tf.io.gfile.exists(path):  # gs:// and other filesystems
        return path
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"gin file {path!r} not found (tried {tried})")


def _search_repository_first() -> None:
    """Makes `include 'gin_configs/...'` lines resolve against the repository.

    The repository goes before gin's default (the current directory): when the
    repository is on `sys.path`, gin's package-resource reader takes
    `gin_configs/models` for a namespace package and fails on it before it
    would try a later search path.
    """
    root = str(REPO_ROOT)
    prefixes = getattr(gin.config, "_LOCATION_PREFIXES", None)
    if prefixes is None:
        gin.add_config_file_search_path(root)
    elif root not in prefixes:
        prefixes.insert(0, root)


def parse(gin_files, gin_bindings=()) -> list[str]:
    """Clears gin and parses the files, then the bindings, in order.

    Import `gin_registry` first: it registers every name the files may use.

    Args:
      gin_files: Paths of gin files (see `resolve_gin_file`).
      gin_bindings: Binding strings such as `train.num_steps = 10`, applied after
        the files (so they override them).

    Returns:
      The resolved gin file paths.

    Raises:
      FileNotFoundError: A gin file does not exist.
      ValueError: Gin's error for an unknown configurable, parameter or macro,
        with the file and line.
    """
    if not gin_files:
        raise ValueError("give at least one --gin_file, e.g. --gin_file=gin_configs/demo.gin")
    files = [resolve_gin_file(f) for f in gin_files]
    gin.clear_config()
    _search_repository_first()
    gin.parse_config_files_and_bindings(files, list(gin_bindings or ()), finalize_config=False)
    return files


def _binding_name(configurable: str, parameter: str) -> str:
    """`train.data_dir`, with the macro it comes from when there is one."""
    try:
        raw = gin.query_parameter(f"{configurable}.{parameter}")
    except ValueError:
        return f"{configurable}.{parameter}"
    selector = getattr(raw, "selector", "")
    if isinstance(raw, gin.config.ConfigurableReference) and selector.endswith("macro"):
        macro = str(raw).lstrip("%")
        return f"{configurable}.{parameter} (macro {macro}, e.g. --gin_bindings='{macro}=...')"
    return f"{configurable}.{parameter}"


def missing_required(configurable: str, fn, provided=()) -> list[str]:
    """Names of `fn`'s parameters that are required but have no value.

    Args:
      configurable: The gin name of `fn`.
      fn: The undecorated function (its signature marks `gin.REQUIRED`).
      provided: Parameters the caller passes itself.

    Returns:
      Human-readable binding names, e.g. `train.num_steps`.
    """
    # Evaluates references such as `@register_custom_dataset()`, whose errors surface here.
    bindings = gin.get_bindings(configurable)
    missing = []
    for name, parameter in inspect.signature(fn).parameters.items():
        if name in provided:
            continue
        if name in bindings:
            if bindings[name] is gin.REQUIRED:
                missing.append(_binding_name(configurable, name))
        elif parameter.default is gin.REQUIRED:
            missing.append(f"{configurable}.{name}")
    return missing


def check_config(entry_points) -> None:
    """Checks the parsed config before any work is done.

    Args:
      entry_points: `(gin name, undecorated function, caller-provided
        parameter names)` of the functions the run will call.

    Raises:
      ValueError: Naming every missing required value, or an unknown backbone
        option.
    """
    missing = []
    for name, fn, provided in entry_points:
        missing += missing_required(name, fn, provided)
    for name in FACTORIES:
        missing += [
            _binding_name(name, k) for k, v in gin.get_bindings(name).items() if v is gin.REQUIRED
        ]
    if missing:
        raise ValueError(
            "missing required gin value(s): "
            + "; ".join(missing)
            + ". Bind them in a gin file or with --gin_bindings."
        )
    for factory in ("build_panoptic_deeplab", "build_classifier"):
        configurables.check_backbone_options(
            gin.get_bindings(factory).get("backbone_options"), f"{factory}.backbone_options"
        )


def write_config(model_dir: str, operative: bool) -> str:
    """Writes the full (`config.gin`) or operative (`operative_config.gin`) config.

    The operative config lists only the values that were used, including the
    defaults; it is written once the model, data and loss have been built.

    Returns:
      The path written.
    """
    text = gin.operative_config_str() if operative else gin.config_str()
    path = os.path.join(model_dir, OPERATIVE_CONFIG_FILE if operative else CONFIG_FILE)
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        f.write(text)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
    logging.info("Wrote %s", path)
    return path


def default_model_dir(gin_files) -> str:
    """`./runs/<name of the last gin file>`, e.g. `./runs/demo` for demo.gin."""
    stem = pathlib.Path(gin_files[-1]).name.removesuffix(".gin")
    return os.path.join("runs", stem)


def gin_bindings(text: str) -> dict[str, str]:
    """`name -> value text` of a config written by gin (`config.gin`).

    Values spread over several lines (dicts, lists) are joined; comments and
    import lines are left out.
    """
    bindings, name = {}, None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "import ", "include ")):
            name = None
            continue
        match = _BINDING.match(line)
        if match:
            name = match.group(1)
            bindings[name] = match.group(2).strip()
        elif name is not None and line[:1].isspace():
            bindings[name] += " " + line.strip()
    return bindings


def config_differences(model_dir: str, limit: int = 8) -> list[str]:
    """Bindings of the parsed gin config that differ from `model_dir/config.gin`.

    Those that shape the network (model, backbone, classes) come first.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        saved = gin_bindings(f.read())
    current = gin_bindings(gin.config_str())
    names = sorted(
        (n for n in set(saved) | set(current) if saved.get(n) != current.get(n)),
        key=lambda n: (not n.startswith(_NETWORK_BINDINGS), n),
    )
    return [
        f"{n} = {saved.get(n, '(unset)')} there, {current.get(n, '(unset)')} now"
        for n in names[:limit]
    ]

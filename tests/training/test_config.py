"""Gin files and command-line checks: every config parses; bad configs fail first, by name."""

import pathlib
import subprocess
import sys

import gin
import pytest

from swiderrnet_tf import train as train_cli
from swiderrnet_tf.backbones import registry
from swiderrnet_tf.meta_arch import panoptic_deeplab
from swiderrnet_tf.training import gin_config
from tests.training import helpers

GIN_DIR = helpers.ROOT / "gin_configs"
ALL_GIN_FILES = sorted(GIN_DIR.rglob("*.gin"))
EXPERIMENTS = sorted(GIN_DIR.glob("*.gin"))
FAST_PICKS = [registry.variant_name(*factors) for factors in registry.FAST_PICKS]
MODEL_ARGUMENTS = ("backbone", "regime", "output_stride", "backbone_options")


@pytest.fixture(autouse=True)
def clear_gin():
    yield
    gin.clear_config()


def _check_model_bindings():
    """Resolves the bound backbone and head options as the model would."""
    classifier = gin.get_bindings("build_classifier")
    if classifier:
        registry.backbone_args(classifier["backbone"])
    bindings = gin.get_bindings("build_panoptic_deeplab")
    if not bindings:
        return
    registry.backbone_args(bindings["backbone"])
    heads = {k: v for k, v in bindings.items() if k not in MODEL_ARGUMENTS}
    panoptic_deeplab.resolve_head_config(
        bindings.get("regime", "strong"), bindings.get("output_stride", 16), heads
    )


@pytest.mark.parametrize("path", ALL_GIN_FILES, ids=lambda p: str(p.relative_to(GIN_DIR)))
def test_every_gin_file_parses_and_checks(path):
    bindings = ["DATA_DIR = '/data/somewhere'"]
    if "BACKBONE = %gin.REQUIRED" in path.read_text():
        bindings.append("BACKBONE = 'swidernet_1_1_4'")
    if "INIT_CHECKPOINT = %gin.REQUIRED" in path.read_text():
        bindings.append("INIT_CHECKPOINT = '/runs/somewhere'")
    gin_config.parse([str(path)], bindings)
    if path.parent == GIN_DIR:
        gin_config.check_config(train_cli._entry_points("train_and_eval"))
    _check_model_bindings()


@pytest.mark.parametrize("backbone", FAST_PICKS)
@pytest.mark.parametrize("experiment", ["cityscapes_fast.gin", "coco_fast.gin"])
def test_fast_experiments_take_each_fast_pick_by_one_binding(experiment, backbone):
    gin_config.parse([f"gin_configs/{experiment}"], [f"BACKBONE = '{backbone}'", "DATA_DIR = 'x'"])
    assert gin.get_bindings("build_panoptic_deeplab")["backbone"] == backbone
    assert gin.get_bindings("build_panoptic_deeplab")["regime"] == "fast"
    _check_model_bindings()


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiments_open_with_command_hardware_and_result(path):
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert f"python -m swiderrnet_tf.train --gin_file=gin_configs/{path.name}" in text
    assert "Hardware:" in text
    assert "result" in text.lower()


def test_paper_recipes_are_bound():
    gin_config.parse(["gin_configs/cityscapes_strong.gin"], ["DATA_DIR = 'x'"])
    train = gin.get_bindings("train")
    assert train["crop_size"] == (1025, 2049)
    assert (train["batch_size"], train["num_steps"], train["learning_rate"]) == (32, 60000, 2.5e-4)
    assert gin.get_bindings("build_panoptic_deeplab")["backbone"] == "swidernet_1_1_4.5"
    assert gin.get_bindings("build_panoptic_deeplab")["backbone_options"][
        "drop_path_keep_prob"
    ] == pytest.approx(0.8)
    assert gin.get_bindings("build_dataset")["autoaugment"] is True


def test_mapillary_chain_fine_tunes_all_but_heads_with_the_cityscapes_recipe():
    gin_config.parse(["gin_configs/cityscapes_strong.gin"], ["DATA_DIR = 'x'"])
    recipe = gin.get_bindings("train")
    gin_config.parse(["gin_configs/cityscapes_strong_from_mapillary.gin"], ["DATA_DIR = 'x'"])
    with pytest.raises(ValueError, match=r"train.init_checkpoint \(macro INIT_CHECKPOINT"):
        gin_config.check_config(train_cli._entry_points("train"))
    chain = gin.get_bindings("train")
    assert chain.pop("init_scope") == "all_but_heads"
    assert chain.pop("init_checkpoint") is gin.REQUIRED and recipe.pop("init_checkpoint") is None
    assert chain == recipe
    assert gin.get_bindings("build_panoptic_deeplab")["backbone"] == "swidernet_1_1_4.5"


def _run(tmp_path, gin_files, *bindings, mode="train"):
    model_dir = tmp_path / "run"
    code = train_cli.run(
        gin_files=gin_files, gin_bindings=list(bindings), model_dir=str(model_dir), mode=mode
    )
    return code, model_dir


@pytest.mark.parametrize(
    "binding, named",
    [
        ("train.num_stepz = 3", "num_stepz"),
        ("trian.num_steps = 3", "trian"),
        ("build_panoptic_deeplab.aspp_chanels = 8", "aspp_chanels"),
        ("build_panoptic_deeplab.backbone_options = {'drop_path_keep': 0.8}", "drop_path_keep"),
        ("ensure_dataset.num_trian = 3", "num_trian"),
    ],
)
def test_unknown_binding_fails_before_any_work_naming_it(tmp_path, capsys, binding, named):
    code, model_dir = _run(tmp_path, [helpers.TINY_GIN], "DATA_DIR = 'x'", binding)
    assert code == 2
    assert named in capsys.readouterr().err
    assert not model_dir.exists()


def test_missing_required_values_fail_before_any_work_naming_them(tmp_path, capsys):
    partial = tmp_path / "partial.gin"
    partial.write_text("include 'gin_configs/models/tiny.gin'\ntrain.dataset_name = 'synthetic'\n")
    code, model_dir = _run(tmp_path, [str(partial)])
    err = capsys.readouterr().err
    assert code == 2
    for name in ("train.crop_size", "train.batch_size", "train.num_steps", "train.learning_rate"):
        assert name in err
    assert not model_dir.exists()


def test_unset_backbone_macro_is_named(tmp_path, capsys):
    config = tmp_path / "strong.gin"
    config.write_text(
        "include 'gin_configs/models/swidernet_strong.gin'\n"
        "include 'gin_configs/datasets/cityscapes.gin'\n"
        "train.crop_size = (33, 33)\n"
        "train.batch_size = 2\n"
        "train.num_steps = 1\n"
        "train.learning_rate = 1e-4\n"
    )
    code, model_dir = _run(tmp_path, [str(config)], "DATA_DIR = 'x'")
    assert code == 2
    assert "build_panoptic_deeplab.backbone (macro BACKBONE" in capsys.readouterr().err
    assert not model_dir.exists()


def test_unset_data_dir_macro_is_named(tmp_path, capsys):
    code, model_dir = _run(tmp_path, ["gin_configs/cityscapes_strong.gin"], mode="train_and_eval")
    err = capsys.readouterr().err
    assert code == 2
    assert "train.data_dir (macro DATA_DIR" in err and "evaluate.data_dir" in err
    assert not model_dir.exists()


def test_gin_file_paths_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = pathlib.Path(gin_config.resolve_gin_file("gin_configs/demo.gin"))
    assert resolved == GIN_DIR / "demo.gin"
    assert gin_config.default_model_dir(["gin_configs/demo.gin"]) == "runs/demo"
    with pytest.raises(FileNotFoundError, match="no_such.gin"):
        gin_config.resolve_gin_file("gin_configs/no_such.gin")


def test_entry_points_register_every_name_their_gin_files_use():
    # A fresh process importing only the training entry point must know the
    # evaluation's multi-scale predictor and the grid search's custom space.
    code = (
        "from swiderrnet_tf import train; from swiderrnet_tf.training import gin_config;"
        "gin_config.parse(['gin_configs/demo.gin'], ["
        "'panoptic_predictor.predict_fn_factory = @multi_scale_predict_fn',"
        "'multi_scale_predict_fn.dataset_name = %DATASET_NAME',"
        "'custom_space.w1 = [0.25]'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=helpers.ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]

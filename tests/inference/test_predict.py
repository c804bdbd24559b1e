"""The predict program: COCO panoptic PNG + JSON that decode back to the panoptic maps."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from swiderrnet_tf import predict
from tests import file_size_limit
from tests.inference import helpers
from tests.inference import test_export

ROOT = pathlib.Path(__file__).parents[2]


def _rgb2id(rgb):
    # panopticapi's rgb2id, written out.
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def _write_images(directory):
    images = helpers.random_images((2, 37, 53), seed=6)  # both with void pixels
    Image.fromarray(images[0]).save(directory / "000000000139.png")
    Image.fromarray(images[1][:30, :41]).save(directory / "street.png")
    return {"000000000139": images[0], "street": images[1][:30, :41]}


def test_predict_writes_coco_panoptic_files(exported, tmp_path):
    model, saved_model = exported
    images = _write_images(tmp_path)
    output = tmp_path / "out"
    result = predict.predict(
        saved_model=saved_model,
        image_patterns=[str(tmp_path / "*.png")],
        output_dir=str(output),
    )
    written = json.loads((output / "panoptic.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert [i["id"] for i in written["images"]] == [139, "street"]
    assert written["categories"][3] == {
        "id": 3,
        "name": "disc",
        "isthing": 1,
        "color": [220, 20, 60],
    }
    voids = []
    for annotation in written["annotations"]:
        stem = annotation["file_name"][: -len(".png")]
        # The SavedModel equals the eager model + merge (test_export).
        outputs = model(images[stem][None], training=False)
        panoptic = test_export.expected_outputs(outputs)["panoptic"][0]
        ids = _rgb2id(np.asarray(Image.open(output / "panoptic" / annotation["file_name"])))
        void = panoptic // 1000 == 255
        voids.append(void.any())
        np.testing.assert_array_equal(ids[void], 0)
        np.testing.assert_array_equal(ids[~void] - 1, panoptic[~void])
        assert sorted(s["id"] for s in annotation["segments_info"]) == sorted(
            set(np.unique(ids)) - {0}
        )
        for segment in annotation["segments_info"]:
            ys, xs = np.nonzero(ids == segment["id"])
            assert segment["area"] == len(ys)
            assert segment["bbox"] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            ]
            assert segment["category_id"] == (segment["id"] - 1) // 1000
            assert segment["iscrowd"] == 0
        overlay = Image.open(output / "overlays" / annotation["file_name"])
        assert overlay.size == images[stem].shape[1::-1]
    assert any(voids)  # void pixels are encoded as 0


def test_image_larger_than_the_canvases_and_a_later_failure(exported, tmp_path):
    model, saved_model = exported
    small = helpers.random_images((1, 37, 53), seed=8)[0]
    # 96x128 on canvases of at most 64 (conftest): predicted at exactly half the size.
    large = helpers.random_images((1, 96, 128), seed=9)[0]
    Image.fromarray(small).save(tmp_path / "a.png")
    Image.fromarray(large).save(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    output = tmp_path / "out"
    with pytest.raises(predict.PredictError) as error:
        predict.predict(
            saved_model=saved_model,
            image_patterns=[str(tmp_path / "*.png")],
            output_dir=str(output),
        )
    assert str(error.value).startswith(f"{tmp_path / 'c.png'}: cannot read the image")
    assert "panoptic.json lists the 2 image(s) done" in str(error.value)
    # The images done before the failure are in panoptic.json, at their own size.
    written = json.loads((output / "panoptic.json").read_text())
    assert [(i["file_name"], i["height"], i["width"]) for i in written["images"]] == [
        ("a.png", 37, 53),
        ("b.png", 96, 128),
    ]
    half = np.asarray(Image.fromarray(large).resize((64, 48), Image.BILINEAR))
    panoptic = test_export.expected_outputs(model(half[None], training=False))["panoptic"][0]
    ids = _rgb2id(np.asarray(Image.open(output / "panoptic" / "b.png")))
    # Each pixel of the half-size map covers a 2x2 block of the original.
    expected = np.repeat(np.repeat(panoptic, 2, axis=0), 2, axis=1)
    void = expected // 1000 == 255
    np.testing.assert_array_equal(ids[void], 0)
    np.testing.assert_array_equal(ids[~void] - 1, expected[~void])
    assert Image.open(output / "overlays" / "b.png").size == (128, 96)
    assert sorted(os.listdir(output / "panoptic")) == ["a.png", "b.png"]


def test_unreadable_image_is_named(exported, tmp_path):
    _, saved_model = exported
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(predict.PredictError, match="broken.jpg: cannot read the image"):
        predict.predict(
            saved_model=saved_model,
            image_patterns=[str(tmp_path / "*.jpg")],
            output_dir=str(tmp_path / "out"),
        )
    # An output folder under a regular file fails before the SavedModel loads.
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="file/out/panoptic: cannot create the output folder"):
        predict.predict(
            saved_model=saved_model,
            image_patterns=[str(tmp_path / "*.jpg")],
            output_dir=str(tmp_path / "file" / "out"),
        )
    with pytest.raises(predict.PredictError, match="no image matches"):
        predict.find_images([str(tmp_path / "*.tif")])
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broken.png").write_bytes(b"")
    with pytest.raises(predict.PredictError, match="have the same name"):
        predict.find_images([str(tmp_path / "*.jpg"), str(tmp_path / "a" / "*.png")])


def test_command_line(exported, tmp_path):
    _, saved_model = exported
    _write_images(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "swiderrnet_tf.predict", f"--saved_model={saved_model}"]
    done = subprocess.run(
        command + [f"--images={tmp_path}/*.png", f"--output_dir={tmp_path}/out"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2/2" in done.stderr  # the progress bar
    assert sorted(os.listdir(tmp_path / "out" / "panoptic")) == ["000000000139.png", "street.png"]
    # A write that fails half-way (files limited to 1500 bytes: EFBIG, as a full
    # disk would fail it) ends with one line naming the file and status 2, and
    # leaves no half-written file.
    out = tmp_path / "out2"
    done = subprocess.run(
        file_size_limit.command("swiderrnet_tf.predict", 1500)
        + [f"--saved_model={saved_model}"]
        + [f"--images={tmp_path}/*.png", f"--output_dir={out}"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {out}/overlays/000000000139.png: cannot write: ")
    ), done.stderr[-2000:]
    assert os.listdir(out / "overlays") == []
    assert json.loads((out / "panoptic.json").read_text())["images"] == []

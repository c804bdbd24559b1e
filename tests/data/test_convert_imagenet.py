"""The ILSVRC2012 converter on a tiny hand-made folder: labels, pixels, odd images, errors."""

import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
from PIL import Image

from swiderrnet_tf.data import convert_imagenet
from swiderrnet_tf.data.converters import ilsvrc

REPO = pathlib.Path(__file__).resolve().parents[2]
# Synsets in sorted order: labels 1, 2, 3.
SYNSETS = ("n01000001", "n02000002", "n03000003")
RED, CYAN, GREEN, BLUE = (255, 0, 0), (0, 255, 255), (0, 255, 0), (0, 0, 255)
# The devkit numbers classes in its own order, not by synset: ID 1 is the second synset.
DEVKIT_IDS = {1: "n02000002", 2: "n03000003", 3: "n01000001"}
# Validation image number -> ILSVRC2012_ID, hence synset and label.
VAL_IDS = {1: 1, 2: 2, 3: 3, 4: 1}
VAL_LABELS = {1: 2, 2: 3, 3: 1, 4: 2}


def _halves(top, bottom, size=(24, 32)) -> np.ndarray:
    image = np.zeros((*size, 3), np.uint8)
    image[: size[0] // 2] = top
    image[size[0] // 2 :] = bottom
    return image


def _save(path: pathlib.Path, image: Image.Image, fmt: str, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **kwargs)


def _write_meta(path: pathlib.Path) -> None:
    """A devkit-style meta.mat: leaf classes 1..3 and one inner node."""
    rows = [*DEVKIT_IDS.items(), (1001, "n09999999")]
    synsets = np.zeros(
        (len(rows), 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")]
    )
    for i, (ilsvrc_id, wnid) in enumerate(rows):
        synsets[i, 0] = (
            np.array([[ilsvrc_id]]),
            np.array([wnid]),
            np.array([[int(ilsvrc_id > 1000)]]),
        )
    scipy.io.savemat(path, {"synsets": synsets})


def make_ilsvrc(root: pathlib.Path, val_layout: str = "devkit") -> pathlib.Path:
    """train/ with an RGB, a grayscale, a CMYK and a PNG-named-.JPEG image; val/ as asked."""
    train = root / "train"
    _save(
        train / SYNSETS[0] / "a_rgb.JPEG", Image.fromarray(_halves(RED, BLUE)), "JPEG", quality=95
    )
    _save(
        train / SYNSETS[0] / "b_gray.JPEG", Image.fromarray(np.full((20, 28), 90, np.uint8)), "JPEG"
    )
    cmyk = np.zeros((24, 32, 4), np.uint8)
    cmyk[:12, :, 1:3] = 255  # C=0 M=255 Y=255 K=0: red
    cmyk[12:, :, 0] = 255  # C=255: cyan
    _save(train / SYNSETS[1] / "c_cmyk.JPEG", Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95)
    _save(train / SYNSETS[2] / "d_png.JPEG", Image.fromarray(_halves(GREEN, BLUE)), "PNG")
    (train / SYNSETS[2] / "notes.txt").write_text("not an image")
    val = root / "val"
    for number, ilsvrc_id in VAL_IDS.items():
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        folder = val / DEVKIT_IDS[ilsvrc_id] if val_layout == "folders" else val
        _save(folder / name, Image.fromarray(_halves(RED, GREEN)), "JPEG")
    if val_layout == "devkit":
        data = root / "ILSVRC2012_devkit_t12" / "data"
        data.mkdir(parents=True)
        lines = "".join(f"{VAL_IDS[n]}\n" for n in sorted(VAL_IDS))
        (data / "ILSVRC2012_validation_ground_truth.txt").write_text(lines)
        _write_meta(data / "meta.mat")
    elif val_layout == "kaggle":
        rows = [f"ILSVRC2012_val_{n:08d},{DEVKIT_IDS[i]} 1 2 20 30" for n, i in VAL_IDS.items()]
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows))
    return root


def read_records(pattern: str) -> list[dict]:
    records = []
    for path in sorted(tf.io.gfile.glob(pattern)):
        for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
            feature = tf.train.Example.FromString(raw).features.feature
            records.append(
                {
                    "name": feature["image/filename"].bytes_list.value[0].decode(),
                    "label": feature["image/class/label"].int64_list.value[0],
                    "synset": feature["image/class/synset"].bytes_list.value[0].decode(),
                    "size": (
                        feature["image/height"].int64_list.value[0],
                        feature["image/width"].int64_list.value[0],
                    ),
                    "encoded": feature["image/encoded"].bytes_list.value[0],
                }
            )
    return records


def test_train_split_labels_and_pixels(tmp_path):
    root = make_ilsvrc(tmp_path / "ilsvrc")
    out = tmp_path / "out"
    paths = convert_imagenet.convert_split(str(root), str(out), "train", num_shards=2)
    assert [os.path.basename(p) for p in paths] == ["train-00000-of-00002", "train-00001-of-00002"]
    assert (out / "synsets.txt").read_text() == "".join(f"{s}\n" for s in SYNSETS)
    records = {r["name"]: r for r in read_records(str(out / "train-*-of-*"))}
    assert sorted(records) == ["a_rgb.JPEG", "b_gray.JPEG", "c_cmyk.JPEG", "d_png.JPEG"]
    expected_labels = {"a_rgb.JPEG": 1, "b_gray.JPEG": 1, "c_cmyk.JPEG": 2, "d_png.JPEG": 3}
    assert {n: r["label"] for n, r in records.items()} == expected_labels
    assert {n: r["synset"] for n, r in records.items()} == {
        n: SYNSETS[label - 1] for n, label in expected_labels.items()
    }
    train = root / "train"
    # RGB and grayscale JPEGs are stored byte for byte, as the reference does.
    assert records["a_rgb.JPEG"]["encoded"] == (train / SYNSETS[0] / "a_rgb.JPEG").read_bytes()
    assert records["b_gray.JPEG"]["encoded"] == (train / SYNSETS[0] / "b_gray.JPEG").read_bytes()
    assert records["b_gray.JPEG"]["size"] == (20, 28)
    # CMYK and PNG come out as RGB JPEGs with the colours they showed.
    for name, top, bottom in (("c_cmyk.JPEG", RED, CYAN), ("d_png.JPEG", GREEN, BLUE)):
        encoded = records[name]["encoded"]
        image = Image.open(io.BytesIO(encoded))
        assert (image.format, image.mode) == ("JPEG", "RGB"), name
        pixels = np.asarray(image).astype(int)
        assert records[name]["size"] == (24, 32)
        np.testing.assert_allclose(pixels[:10].reshape(-1, 3).mean(0), top, atol=6)
        np.testing.assert_allclose(pixels[14:].reshape(-1, 3).mean(0), bottom, atol=6)


@pytest.mark.parametrize("val_layout", ["devkit", "kaggle", "folders"])
def test_validation_ground_truth(tmp_path, val_layout):
    root = make_ilsvrc(tmp_path / "ilsvrc", val_layout)
    out = tmp_path / "out"
    convert_imagenet.convert_split(str(root), str(out), "val", num_shards=2)
    records = read_records(str(out / "validation-*-of-*"))
    labels = {int(r["name"][15:23]): r["label"] for r in records}
    assert labels == VAL_LABELS
    assert all(r["synset"] == SYNSETS[r["label"] - 1] for r in records)


def test_resume_skips_complete_shards(tmp_path):
    root = make_ilsvrc(tmp_path / "ilsvrc")
    out = tmp_path / "out"
    first = convert_imagenet.convert_split(str(root), str(out), "train", num_shards=2)
    before = [pathlib.Path(p).read_bytes() for p in first]
    os.remove(first[1])
    second = convert_imagenet.convert_split(str(root), str(out), "train", num_shards=2)
    assert [pathlib.Path(p).read_bytes() for p in second] == before


def test_errors_name_the_file(tmp_path):
    root = make_ilsvrc(tmp_path / "ilsvrc")
    out = str(tmp_path / "out")
    broken = root / "train" / SYNSETS[1] / "e_broken.JPEG"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.raises(ilsvrc.ConversionError, match="e_broken.JPEG: cannot decode"):
        convert_imagenet.convert_split(str(root), out, "train", num_shards=1)
    assert not list(pathlib.Path(out).glob("train-0*")), "no half-written shard"
    broken.unlink()
    (root / "train" / "extras").mkdir()
    with pytest.raises(ilsvrc.ConversionError, match="extras: folder not named like"):
        convert_imagenet.convert_split(str(root), out, "train", num_shards=1)
    (root / "train" / "extras").rmdir()
    (root / "val" / "ILSVRC2012_val_00000002.JPEG").unlink()
    with pytest.raises(ilsvrc.ConversionError, match="1 images missing .* ILSVRC2012_val_00000002"):
        convert_imagenet.convert_split(str(root), out, "val", num_shards=1)
    _save(root / "val" / "ILSVRC2012_val_00000002.JPEG", Image.new("RGB", (8, 8)), "JPEG")
    _save(root / "val" / "ILSVRC2012_val_00000009.JPEG", Image.new("RGB", (8, 8)), "JPEG")
    with pytest.raises(ilsvrc.ConversionError, match="00000009.JPEG: no entry in .*ground_truth"):
        convert_imagenet.convert_split(str(root), out, "val", num_shards=1)


def test_command_line_user_error(tmp_path):
    root = make_ilsvrc(tmp_path / "ilsvrc")
    (root / "val" / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "swiderrnet_tf.data.convert_imagenet", f"--input_dir={root}"]
        + [f"--output_dir={tmp_path / 'out'}", "--split=validation", "--num_workers=1"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "ILSVRC2012_val_00000003.JPEG" in last, last
    assert "Traceback" not in done.stderr

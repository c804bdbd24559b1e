"""Result tables and the JSON file."""

import json
import math

from swiderrnet_tf.evaluation import report

NAN = math.nan
RESULTS = {
    "pq": 0.5,
    "sq": 0.75,
    "rq": 2 / 3,
    "n": 3,
    "pq_thing": NAN,
    "sq_thing": NAN,
    "rq_thing": NAN,
    "n_thing": 0,
    "pq_stuff": 0.5,
    "sq_stuff": 0.75,
    "rq_stuff": 2 / 3,
    "n_stuff": 3,
    "miou": 0.25,
    "pixel_accuracy": 0.9,
    "num_images": 2,
}


def _row(class_id, name, kind, counted, pq, tp, iou, ap=NAN):
    return {
        "class_id": class_id,
        "name": name,
        "kind": kind,
        "pq": pq,
        "sq": pq,
        "rq": 1.0 if counted else 0.0,
        "tp": tp,
        "fp": 0,
        "fn": 0,
        "iou_sum": pq * tp,
        "counted": counted,
        "iou": iou,
        "ap": ap,
    }


def test_summary_table():
    assert report.format_summary(RESULTS) == (
        "          |     PQ     SQ     RQ     N\n"
        "----------+---------------------------\n"
        "All       |   50.0   75.0   66.7     3\n"
        "Things    |      -      -      -     0\n"
        "Stuff     |   50.0   75.0   66.7     3\n"
        "mIoU 25.0  pixel accuracy 90.0\n"
        "images: 2"
    )


def test_per_class_table_is_aligned():
    rows = [
        _row(0, "road", "stuff", True, 0.975, 12, 0.98),
        _row(1, "traffic light", "thing", False, 0.0, 0, NAN, ap=NAN),
    ]
    assert report.format_per_class(rows).split("\n") == [
        "  id  name           kind      PQ     SQ     RQ     TP     FP     FN    IoU     AP",
        "-" * 82,
        "   0  road           stuff   97.5   97.5  100.0     12      0      0   98.0      -",
        "   1  traffic light  thing      -      -      -      0      0      0      -      -",
    ]


def test_json_has_no_nan(tmp_path):
    path = tmp_path / "metrics.json"
    rows = [_row(0, "road", "stuff", True, 0.975, 12, 0.98)]
    report.write_json(str(path), RESULTS, rows)
    document = json.loads(path.read_text())
    assert document["metrics"]["pq"] == 0.5
    assert document["metrics"]["pq_thing"] is None
    assert document["per_class"][0]["name"] == "road"
    assert document["per_class"][0]["ap"] is None

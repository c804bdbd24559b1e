#!/usr/bin/env bash
# Runs the built-in demo from scratch (data generation, training, evaluation)
# and prints its wall time, the machine's load and the panoptic quality.
#
#   scripts/run_demo.sh [MODEL_DIR]     (default: runs/demo_<date>_<time>, new)
#
# The demo is gin_configs/demo.gin: a tiny SWideRNet trained on the built-in
# synthetic dataset on the CPU. Expect PQ above 50 in under 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

model_dir="${1:-runs/demo_$(date +%Y%m%d_%H%M%S)}"
echo "model_dir: ${model_dir}"
echo "cpus: $(nproc); load average before (1, 5, 15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
python -m swiderrnet_tf.train --gin_file=gin_configs/demo.gin --model_dir="${model_dir}"
end=$(date +%s)
echo "load average after (1, 5, 15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wall time: $((end - start)) s"
python - "${model_dir}" <<'PYTHON'
import glob
import json
import os
import sys

paths = glob.glob(os.path.join(sys.argv[1], "eval", "results_step_*.json"))
latest = max(paths, key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))
metrics = json.load(open(latest))["metrics"]
print(f"PQ {100 * metrics['pq']:.1f} (things {100 * metrics['pq_thing']:.1f}, "
      f"stuff {100 * metrics['pq_stuff']:.1f}), mIoU {100 * metrics['miou']:.1f} "
      f"on {metrics['num_images']} validation images, step {metrics['step']} ({latest})")
PYTHON

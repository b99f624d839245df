#!/usr/bin/env bash
# The CUDA path, checked in a few minutes on a GPU machine (issue 12 item 8):
#   1. a short job with trainer=gpu (16-mixed training; the CAM pass computes in float32), results.json written;
#   2. CAM parity on CUDA: every method's maps under autocast(fp16) equal its fp32 maps (the engine computes in
#      float32 whatever autocast is active);
#   3. the BLS fitted on CUDA by the job's own fitting step (BLSFitting, TF32 left on around it as a job leaves
#      it: the extraction turns it off inside) equals the CPU fit to 1e-4 (cam_weights, relative);
#   4. a trainer=ddp job through the whole pipeline on every GPU found (2 or more exercise NCCL: the
#      collectives, the metric reduction on the GPU, the BLS broadcast); results.json says how many ranks.
# Timings of each step are printed. Without CUDA it says so and exits 0 (nothing to check on this machine).
#   bash scripts/gpu_check.sh [workdir]     (default: a fresh temp dir, removed afterwards)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing to check, exiting"
  exit 0
fi
work=${1:-$(mktemp -d)}
[[ $# -ge 1 ]] || trap 'rm -rf "$work"' EXIT
"$PYTHON" -c "import torch; print('gpu_check on', torch.cuda.get_device_name(0), '| torch', torch.__version__)"

SECONDS=0
WANDB_MODE=disabled "$PYTHON" -m src.run trainer=gpu debug=fast data.num_train=240 data.num_val=32 data.num_test=32 \
  data.image_size=128 logger=csv "paths.cache_dir=$work/cache" "hydra.run.dir=$work/job" >"$work/job.log" 2>&1 \
  || { tail -30 "$work/job.log"; echo "gpu_check: FAILED: the trainer=gpu job"; exit 1; }
test -f "$work/job/results.json" || { echo "gpu_check: FAILED: no results.json"; exit 1; }
echo "gpu_check: 1. trainer=gpu job ok in ${SECONDS} s ($work/job)"

"$PYTHON" - "$work" <<'PY'
"""2. CAM parity fp32 vs AMP on CUDA; 3. BLS on CUDA vs CPU."""
import os
import sys
import time
from pathlib import Path

import torch

from src.bls import fit_bls
from src.cams import CAM_METHODS, CamSpec
from src.data.synthetic import SyntheticDataModule
from src.models import Classifier, backbone_spec

torch.manual_seed(0)
cuda = torch.device(os.environ.get("GPU_CHECK_DEVICE", "cuda"))  # =cpu: a dry run of this part on a CPU
dm = SyntheticDataModule(root=str(Path(sys.argv[1]) / "cache" / "synthetic"), image_size=128, num_train=64,
                         num_val=8, num_test=8, batch_size=16, eval_batch_size=16)
dm.prepare_data(); dm.setup("fit")
net = Classifier("resnet18", dm.num_classes, None).net.to(cuda).eval()
images = next(iter(dm.test_dataloader()))["image"][:4].to(cuda)
targets = torch.arange(4, device=cuda) % dm.num_classes
bls, _ = fit_bls(net, dm.train_subset_eval_dataloader(), ["layer3", "layer4"], 50.0, 256, cuda)
worst = 0.0
for name in sorted(CAM_METHODS):
    layers = ["layer3", "layer4"] if name == "broadcam" else backbone_spec("resnet18").cam_layers
    options = {"bls": bls} if name == "broadcam" else {}
    engine = CamSpec(name, layers, options).create(net)
    tick = time.perf_counter()
    fp32 = engine(images, targets)
    with torch.autocast(cuda.type, dtype=torch.float16 if cuda.type == "cuda" else torch.bfloat16):
        amp = engine(images, targets)
    torch.cuda.synchronize() if cuda.type == "cuda" else None
    engine.remove()
    diff = float((fp32 - amp).abs().max())
    worst = max(worst, diff)
    print(f"gpu_check: 2. {name:10s} fp32 vs fp16 autocast max |diff| = {diff:.2e} "
          f"({time.perf_counter() - tick:.2f} s for both)")
if worst > 1e-4:
    sys.exit(f"gpu_check: FAILED: CAM maps under AMP differ from fp32 by {worst:.2e} (> 1e-4)")
# 3. The job's own fitting step (src/bls/fitting.py, what fit_cam_method calls), with TF32 on around it as in a
# job (cuDNN's default): the extraction must turn it off itself, then restore it.
from src.bls import BLSFitting

torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
fitting = BLSFitting(["layer3", "layer4"], alpha=50.0, step=256)
tick = time.perf_counter()
on_gpu, _ = fitting(net, dm, cuda)
gpu_s = time.perf_counter() - tick
if not (torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32):
    sys.exit("gpu_check: FAILED: the BLS fitting step left TF32 switched off (it must restore the caller's setting)")
tick = time.perf_counter()
on_cpu, _ = fitting(net.cpu(), dm, "cpu")
cpu_s = time.perf_counter() - tick
a, b = on_gpu.cam_weights.cpu(), on_cpu.cam_weights
rel = float((a - b).abs().max() / b.abs().max())
print(f"gpu_check: 3. BLS cam_weights CUDA vs CPU through BLSFitting (TF32 on outside) max rel diff = {rel:.2e} "
      f"(fit+features {gpu_s:.2f} s CUDA, {cpu_s:.2f} s CPU)")
if rel > 1e-4:  # fp32 features differ by cuDNN summation order (~1e-6 relative); the float64 solve keeps it small
    sys.exit(f"gpu_check: FAILED: BLS on CUDA differs from CPU by {rel:.2e} (> 1e-4)")
print("gpu_check: steps 2-3 passed")
PY

# 4. DDP on every GPU: the whole pipeline (train, BLS broadcast, CAM pass, metric reduction on the GPUs).
gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
SECONDS=0
WANDB_MODE=disabled "$PYTHON" -m src.run trainer=ddp "trainer.devices=$gpus" debug=fast data.num_train=240 \
  data.num_val=33 data.num_test=32 data.image_size=128 data.batch_size=$((8 * gpus)) logger=csv \
  "paths.cache_dir=$work/cache" "hydra.run.dir=$work/ddp" >"$work/ddp.log" 2>&1 \
  || { tail -30 "$work/ddp.log"; echo "gpu_check: FAILED: the trainer=ddp job on $gpus GPU(s)"; exit 1; }
"$PYTHON" - "$work/ddp/results.json" "$gpus" <<'PY' || exit 1
import json, sys
results = json.load(open(sys.argv[1]))
ranks, expected = results["ranks"], int(sys.argv[2])
if ranks != expected or results["n_eval"] != 33:
    sys.exit(f"gpu_check: FAILED: the DDP job ran {ranks} ranks (expected {expected}), scored {results['n_eval']} of 33")
PY
echo "gpu_check: 4. trainer=ddp job on $gpus GPU(s) ok in ${SECONDS} s ($work/ddp)"
echo "gpu_check: all CUDA checks passed"

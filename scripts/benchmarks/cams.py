"""Our CAM methods against a bare forward, a full backward and the peers, side by side in one process.

ResNet-50 @ 224, batch 8 (random weights, eval mode) for CAM and the Grad-CAM family (peer: pytorch-grad-cam,
TorchCAM's CAM for `cam`); ResNet-18 with fewer images for Score-CAM, with 1 and 2 classes per image (the peer
is called once per class). Prints a table and writes
`{"device", "rows": [{"method", "model", "ms_per_image", "x_forward", "x_peer", "peer", "peer_ms_per_image"}]}`
where x_forward = ours / bare forward of the same model and x_peer = ours / peer, each the median of the ratios
within `--repeats` paired rounds (robust to a shared machine's changing load).

    python scripts/bench.py cams [--quick] [--repeats N] [--out outputs/bench/cams.json]
"""
from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score-CAM prints a progress bar per image

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision  # noqa: E402
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from torchcam.methods import CAM as TorchCAM  # noqa: E402

from benchmarks.timing import machine, timed  # noqa: E402
from src.cams import create_cam  # noqa: E402

QUICK = "smaller batches and images, fewer repeats"
GRAD_PEERS = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per row (median); default 5, quick 2")
    parser.add_argument("--scorecam-images", type=int, default=1, help="images for the Score-CAM rows")
    parser.add_argument("--scorecam-batch", type=int, default=32, help="masked inputs per forward (both sides)")


def paired_seconds(fns: dict, repeats: int, device: torch.device, warm_up: bool = True) -> dict[str, list[float]]:
    """Wall times of each `fns[name]()` over `repeats` rounds, after one warm-up round. Each round runs all of
    them back to back, so that ratios taken within a round cancel slow drifts of a shared machine's load."""
    times = {name: [] for name in fns}
    for run in range(0 if warm_up else 1, repeats + 1):
        for name, fn in fns.items():
            _, seconds = timed(fn, device)
            if run:
                times[name].append(seconds)
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    return statistics.median(n / d for n, d in zip(numerator, denominator))


def peer_targets(targets: torch.Tensor) -> list[ClassifierOutputTarget]:
    return [ClassifierOutputTarget(int(t)) for t in targets]


def torchcam_maps(extractor: TorchCAM, model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor):
    """TorchCAM's CAM brought to our output: maps at input size."""
    with torch.no_grad():
        model(images)
    maps = extractor(class_idx=targets.tolist())[0]
    return F.interpolate(maps[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)


def run(args: argparse.Namespace) -> dict:
    args.repeats = args.repeats or (2 if args.quick else 5)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    rows = []

    def add(method, model_name, images, forward, ours, peer=None, peer_name=None, repeats=args.repeats, warm_up=True):
        """Time `ours` (and `peer`) against the bare `forward`, paired round by round, and add a row."""
        fns = {"forward": forward} | ({} if ours is forward else {"ours": ours}) | ({"peer": peer} if peer else {})
        times = paired_seconds(fns, repeats, device, warm_up)
        times["ours"] = times["ours"] if "ours" in times else times["forward"]
        row = {
            "method": method,
            "model": model_name,
            "ms_per_image": 1e3 * statistics.median(times["ours"]) / images,
            "x_forward": median_ratio(times["ours"], times["forward"]),
            "x_peer": median_ratio(times["ours"], times["peer"]) if peer else None,
            "peer": peer_name,
            "peer_ms_per_image": 1e3 * statistics.median(times["peer"]) / images if peer else None,
        }
        rows.append(row)
        x_peer = "" if peer is None else f"{row['x_peer']:.2f}"
        print(f"{method:<22} {model_name:<14} {row['ms_per_image']:>10.1f} {row['x_forward']:>8.2f} {x_peer:>8} "
              f"{peer_name or ''}", flush=True)

    print(f"device: {device}, threads: {torch.get_num_threads()}")
    print(f"{'method':<22} {'model':<14} {'ms/image':>10} {'x_fwd':>8} {'x_peer':>8} peer")

    # ----- ResNet-50: CAM and the Grad-CAM family ----------------------------------------------------------
    batch, size = (2, 224) if args.quick else (8, 224)
    model = torchvision.models.resnet50(weights=None).eval().to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    targets = torch.randint(0, 1000, (batch,), device=device)
    name = f"resnet50@{size}"

    def forward():
        with torch.no_grad():
            model(images)

    def full_backward():
        model.zero_grad(set_to_none=True)
        model(images).gather(1, targets[:, None]).sum().backward()
        model.zero_grad(set_to_none=True)

    add("forward (no_grad)", name, batch, forward, forward)
    add("forward+backward", name, batch, forward, full_backward)
    with create_cam("cam", model, ["layer4"]) as ours, TorchCAM(model, "layer4", "fc") as peer:
        add("cam", name, batch, forward, lambda: ours(images, targets),
            lambda: torchcam_maps(peer, model, images, targets), "torchcam.CAM")
    for method, peer_class in GRAD_PEERS.items():
        with create_cam(method, model, ["layer4"]) as ours, peer_class(model, [model.layer4]) as peer:
            add(method, name, batch, forward, lambda: ours(images, targets),
                lambda: peer(images, peer_targets(targets)), f"pytorch_grad_cam.{peer_class.__name__}")
    classes = 4
    several = torch.randint(0, 1000, (batch, classes), device=device)
    with create_cam("gradcam", model, ["layer4"]) as ours, GradCAM(model, [model.layer4]) as peer:
        add(f"gradcam K={classes}", name, batch, forward, lambda: ours(images, several),
            lambda: [peer(images, peer_targets(several[:, k])) for k in range(classes)],
            f"pytorch_grad_cam.GradCAM x{classes}")
    with create_cam("gradcam", model, ["layer3", "layer4"]) as ours, GradCAM(model, [model.layer3, model.layer4]) as peer:
        add("gradcam layer3+4", name, batch, forward, lambda: ours(images, targets),
            lambda: peer(images, peer_targets(targets)), "pytorch_grad_cam.GradCAM")

    # ----- ResNet-18: Score-CAM (one masked forward per channel and image) ---------------------------------
    batch, size = (1, 112) if args.quick else (args.scorecam_images, 224)
    model = torchvision.models.resnet18(weights=None).eval().to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    two = torch.randint(0, 1000, (batch, 2), device=device)
    name = f"resnet18@{size}"
    repeats = max(1, (args.repeats + 1) // 2)  # a Score-CAM call is ~500 forwards; the model is warm already

    def forward18():
        with torch.no_grad():
            model(images)

    add("forward (no_grad)", name, batch, forward18, forward18)
    with create_cam("scorecam", model, ["layer4"], batch_size=args.scorecam_batch) as ours, \
            ScoreCAM(model, [model.layer4]) as peer:
        peer.batch_size = args.scorecam_batch
        add("scorecam", name, batch, forward18, lambda: ours(images, two[:, 0]),
            lambda: peer(images, peer_targets(two[:, 0])), "pytorch_grad_cam.ScoreCAM", repeats, False)
        add("scorecam K=2", name, batch, forward18, lambda: ours(images, two),
            lambda: [peer(images, peer_targets(two[:, k])) for k in range(2)], "pytorch_grad_cam.ScoreCAM x2", repeats, False)
    return {"machine": machine(device), "rows": rows}


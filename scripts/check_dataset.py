"""Check a dataset layout before running jobs on it: per split, the images found against the published
sizes, missing masks, unreadable files and masks whose size differs from their image's.

    python scripts/check_dataset.py data=voc2012 data.root=/data/VOCdevkit/VOC2012 [--no-verify]
    python scripts/check_dataset.py data=folder data.root=/data/my_images

A folder dataset (`data=folder`) is surveyed by `src.data.folder_check`: images per split and per class, images
without labels, masks found / missing / of the wrong size, classes with no training image, unreadable files.

The overrides are Hydra's, composed with conf/config.yaml. Every file is decoded unless `--no-verify`
(then only the listing, labels and mask presence are checked). Exits 1 when the training or the evaluation
split is unusable (or holds unreadable files while data.on_corrupt=error), 0 otherwise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `src` when run as a script

import hydra  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import InstantiationException  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from omegaconf.errors import MissingMandatoryValue  # noqa: E402

from src.data.folder_check import survey_folder, survey_lines  # noqa: E402
from src.data.image_io import DatasetError, FileSplitDataModule, SplitFiles, image_hw  # noqa: E402

FOLDER_TARGET = "src.data.folder.FolderDataModule"


def mask_size_mismatches(files: SplitFiles) -> list[str]:
    """'mask: HxW vs image HxW' for each class mask whose header size differs from its image's."""
    found = []
    for image, annotation in zip(files.images, files.annotations or []):
        mask = annotation[0] if isinstance(annotation, tuple) else annotation
        if mask is None:  # a folder dataset's image without a mask
            continue
        try:
            sizes = image_hw(mask), image_hw(image)
        except OSError:
            continue  # unreadable: reported by the decode pass
        if sizes[0] != sizes[1]:
            found.append(f"{mask}: {sizes[0]} (HxW) vs image {sizes[1]}")
    return found


def survey_split(datamodule: FileSplitDataModule, split: str, verify: bool) -> dict:
    """What one split holds; `error` set when it cannot be listed at all."""
    try:
        files = datamodule.split_files(split)
    except DatasetError as error:
        return {"error": str(error)}
    published = datamodule.published_sizes.get(split)
    return {"count": len(files.ids), "published": published, "has_masks": files.annotations is not None,
            "masks_absent": files.masks_absent, "missing_masks": len(files.missing_masks),
            "unreadable": files.skipped if verify else [],
            "size_mismatches": mask_size_mismatches(files) if datamodule.masks_match_image else []}


def print_split(split: str, info: dict, roles: list[str]) -> None:
    role = f" [{', '.join(roles)}]" if roles else ""
    if "error" in info:
        print(f"  {split:<10} UNUSABLE{role}: {info['error']}")
        return
    published = f"published {info['published']:,}" if info["published"] else "published size unknown"
    if info["published"] and info["count"] != info["published"]:
        published += f" (differs by {info['count'] - info['published']:+,})"
    masks = "masks: yes" if info["has_masks"] else f"masks: no ({info['masks_absent']})"
    print(f"  {split:<10} {info['count']:>7,} images, {published}; {masks}{role}")
    for key, label in (("unreadable", "unreadable files"), ("size_mismatches", "mask/image size mismatches")):
        if info[key]:
            print(f"             {len(info[key])} {label}, e.g. {info[key][0]}")


def problems(split: str, info: dict, role: str, on_corrupt: str) -> list[str]:
    """Why a split with `role` (training / evaluation) makes the layout unusable."""
    if "error" in info:
        return [f"{role} split {split!r}: {info['error']}"]
    found = []
    if role == "evaluation" and not info["has_masks"]:
        found.append(f"evaluation split {split!r} has no masks: {info['masks_absent']}")
    if on_corrupt == "error" and info["unreadable"]:
        found.append(f"{role} split {split!r} has {len(info['unreadable'])} unreadable files (data.on_corrupt=error)")
    if role == "evaluation" and info["size_mismatches"]:
        found.append(f"evaluation split {split!r} has {len(info['size_mismatches'])} masks of the wrong size")
    return found


def check_folder(cfg, verify: bool) -> int:
    """Survey a `data=folder` layout (`src.data.folder_check`), print it and its problems; 1 when unusable."""
    data = cfg.data
    try:
        root = data.root
    except MissingMandatoryValue:
        print("UNUSABLE: data.root is not set; give it as an override, e.g. data.root=/path/to/my_images")
        return 1
    fractions = OmegaConf.to_container(data.split_fractions) if data.get("split_fractions") else None
    survey = survey_folder(root, data.train_split, data.eval_split, fractions, data.split_seed, data.on_corrupt, verify)
    for line in survey_lines(survey, data.train_split):
        print(line)
    for problem in survey.problems:
        print(f"UNUSABLE: {problem}")
    if not survey.problems:
        print("usable")
    return 1 if survey.problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data=voc2012 data.root=/data/VOC2012")
    parser.add_argument("--no-verify", action="store_true", help="do not decode every file")
    parser.add_argument("--config-dir", default=str(REPO / "conf"), help="the Hydra config folder")
    args = parser.parse_args(argv)
    with initialize_config_dir(str(Path(args.config_dir).resolve()), version_base="1.3"):
        cfg = compose("config", overrides=args.overrides)
    on_corrupt = cfg.data.get("on_corrupt", "error")
    if OmegaConf.select(cfg, "data._target_") == FOLDER_TARGET:
        return check_folder(cfg, verify=not args.no_verify)
    try:
        # listing with "skip" decodes every file and collects the unreadable ones instead of stopping
        policy = {"on_corrupt": "error" if args.no_verify else "skip"} if "on_corrupt" in cfg.data else {}
        datamodule = hydra.utils.instantiate(cfg.data, **policy)
    except MissingMandatoryValue as error:
        print(f"UNUSABLE: {error.full_key} is not set; give it as an override, e.g. {error.full_key}=/path")
        return 1
    except InstantiationException as error:  # Hydra wraps the constructor's own error
        if not isinstance(error.__cause__, DatasetError):
            raise
        print(f"UNUSABLE: {error.__cause__}")
        return 1
    if not isinstance(datamodule, FileSplitDataModule):
        print(f"data={OmegaConf.select(cfg, 'data._target_')} is not a dataset on disk; nothing to check")
        return 0
    roles = {datamodule.train_split: ["training"]}
    roles.setdefault(datamodule.eval_split, []).append("evaluation")
    print(f"{datamodule.name} at {datamodule.root} (data.on_corrupt={on_corrupt})")
    found = []
    for split in dict.fromkeys([*datamodule.splits, *roles]):
        info = survey_split(datamodule, split, verify=not args.no_verify)
        print_split(split, info, roles.get(split, []))
        found += [p for role in roles.get(split, []) for p in problems(split, info, role, on_corrupt)]
    for problem in found:
        print(f"UNUSABLE: {problem}")
    if not found:
        print("usable")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

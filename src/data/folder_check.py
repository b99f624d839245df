"""What `scripts/check_dataset.py data=folder data.root=…` reports: a survey of a folder layout that keeps going
past the problems `FolderDataModule` would stop at, so that one run lists them all with the counts.

Per split: images, masks found / missing / of the wrong size / with class ids out of range, boxed images; per class:
images in each split; images without labels (no row in labels.csv, or an empty field); classes without a training
image; unreadable files (every image and mask decoded unless `verify=False`); masks without an image. `problems`
says why the layout is unusable (empty, a bad mask, an unreadable file under on_corrupt=error, …).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from src.data.folder import header_hw, mask_size_problem, mask_value_problem
from src.data.folder_layout import SPLIT_NAMES, read_boxes, read_folder_images
from src.data.folder_splits import default_eval_split, folder_splits
from src.data.image_io import DatasetError, verify_file


@dataclass
class SplitSurvey:
    images: int = 0
    per_class: list[int] = field(default_factory=list)
    masks_found: int = 0
    masks_missing: int = 0
    wrong_size: list[str] = field(default_factory=list)
    bad_values: list[str] = field(default_factory=list)
    boxed: int = 0
    no_class: int = 0


@dataclass
class FolderSurvey:
    root: Path
    class_names: tuple[str, ...] = ()
    classes_from: str = ""
    split_source: str = ""
    splits: dict[str, SplitSurvey] = field(default_factory=dict)
    unlabelled: list[Path] = field(default_factory=list)
    unsplit: int = 0
    unreadable: list[str] = field(default_factory=list)
    orphan_masks: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    eval_split: str = "val"


def survey_folder(root: str | Path, train_split: str = "train", eval_split: str | None = None,
                  split_fractions: Mapping | None = None, split_seed: int = 0, on_corrupt: str = "error",
                  verify: bool = True) -> FolderSurvey:
    """Survey the layout at `root` with the datamodule's split settings; `verify` decodes every used file."""
    root = Path(root)
    survey = FolderSurvey(root)
    try:
        images = read_folder_images(root)
        splits = folder_splits(images, split_fractions, int(split_seed))
    except DatasetError as error:
        survey.problems.append(str(error))
        return survey
    survey.class_names, survey.classes_from = images.class_names, images.classes_from
    survey.unlabelled = images.unlabelled
    survey.split_source = splits.sources[train_split]
    survey.eval_split = eval_split = default_eval_split(splits, eval_split)
    try:
        boxes = read_boxes(root, images, {i: header_hw(p) for i, p in zip(images.ids, images.images)})
    except DatasetError as error:
        survey.problems.append(str(error))
        boxes = {}
    listed = set()
    for name in SPLIT_NAMES:
        survey.splits[name] = _survey_split(images, splits.members[name], boxes)
        listed.update(splits.members[name])
    survey.unsplit = len(images.ids) - len(listed)
    used = sorted(listed)
    if verify:
        files = [images.images[i] for i in used] + [root / "masks" / f"{images.ids[i]}.png" for i in used]
        for path in files:
            try:
                if path.is_file():
                    verify_file(path)
            except DatasetError as error:
                survey.unreadable.append(str(error))
    known = {f"{image_id}.png" for image_id in images.ids}
    mask_dir = root / "masks"
    if mask_dir.is_dir():
        survey.orphan_masks = [path for path in sorted(mask_dir.rglob("*.png"))
                               if path.relative_to(mask_dir).as_posix() not in known]
    survey.problems += _problems(survey, splits.sources, train_split, eval_split, on_corrupt)
    return survey


def _survey_split(images, members: list[int], boxes: dict) -> SplitSurvey:
    split = SplitSurvey(len(members), images.labels[members].sum(0).astype(int).tolist() if members else
                        [0] * len(images.class_names))
    for i in members:
        image_id, image = images.ids[i], images.images[i]
        split.no_class += int(images.labels[i].sum() == 0)
        split.boxed += int(image_id in boxes)
        mask = images.root / "masks" / f"{image_id}.png"
        if not mask.is_file():
            split.masks_missing += 1
            continue
        split.masks_found += 1
        try:
            size = mask_size_problem(mask, image)
        except DatasetError:
            continue  # a header that cannot be read: the decode pass lists the file
        if size:
            split.wrong_size.append(size)
            continue
        try:
            values = mask_value_problem(mask, len(images.class_names), images.classes_from)
        except DatasetError as error:  # not a mask of class indices (e.g. a colour image)
            values = str(error)
        if values:
            split.bad_values.append(values)
    return split


def _problems(survey: FolderSurvey, sources: dict[str, str], train_split: str, eval_split: str,
              on_corrupt: str) -> list[str]:
    found = []
    for role, name in (("training", train_split), ("evaluation", eval_split)):
        if survey.splits[name].images == 0:
            found.append(f"{sources[name]}: {role} split {name!r} is empty")
    absent = [c for c, count in zip(survey.class_names, survey.splits[train_split].per_class) if count == 0]
    if absent and survey.splits[train_split].images:
        found.append(f"class(es) {absent} have no image in the training split {train_split!r}")
    for name, split in survey.splits.items():
        for what, items in (("masks of the wrong size", split.wrong_size), ("masks with class ids out of range",
                                                                            split.bad_values)):
            if items:
                found.append(f"split {name!r} has {len(items)} {what}, e.g. {items[0]}")
    if survey.unreadable and on_corrupt == "error":
        found.append(f"{len(survey.unreadable)} unreadable files (data.on_corrupt=error), e.g. {survey.unreadable[0]}")
    return found


def survey_lines(survey: FolderSurvey, train_split: str = "train") -> list[str]:
    """The survey as the lines check_dataset prints (problems excluded: the script prints them last)."""
    if not survey.class_names:
        return [f"folder dataset at {survey.root}"]
    eval_split = survey.eval_split
    roles = {train_split: "training", eval_split: "evaluation"}
    if train_split == eval_split:
        roles[train_split] = "training, evaluation"
    lines = [f"folder dataset at {survey.root}",
             f"  classes ({len(survey.class_names)}, from {survey.classes_from}): {', '.join(survey.class_names)}",
             f"  splits from {survey.split_source}",
             f"  {'split':<6} {'images':>7} {'no class':>9} {'masks':>6} {'missing':>8} {'wrong size':>11} "
             f"{'bad ids':>8} {'boxed':>6}"]
    for name, split in survey.splits.items():
        role = f"  [{roles[name]}]" if name in roles else ""
        lines.append(f"  {name:<6} {split.images:>7} {split.no_class:>9} {split.masks_found:>6} "
                     f"{split.masks_missing:>8} "
                     f"{len(split.wrong_size):>11} {len(split.bad_values):>8} {split.boxed:>6}{role}")
    width = max(len(name) for name in survey.class_names)
    lines.append(f"  images per class: {'class':<{width}} " + " ".join(f"{name:>6}" for name in survey.splits))
    for c, name in enumerate(survey.class_names):
        counts = " ".join(f"{split.per_class[c]:>6}" for split in survey.splits.values())
        lines.append(f"                    {name:<{width}} {counts}")
    no_training = [c for c, count in zip(survey.class_names, survey.splits[train_split].per_class) if count == 0]
    lines.append(f"  classes with no training image: {', '.join(no_training) if no_training else 'none'}")
    example = f", e.g. {survey.unlabelled[0]}" if survey.unlabelled else ""
    lines.append(f"  images without labels: {len(survey.unlabelled)} with no row in labels.csv (not used){example}; "
                 f"{sum(s.no_class for s in survey.splits.values())} with an empty labels field (no class)")
    if survey.unsplit:
        lines.append(f"  images in no split (not used): {survey.unsplit}")
    example = f", e.g. {survey.unreadable[0]}" if survey.unreadable else ""
    lines.append(f"  unreadable files: {len(survey.unreadable)}{example}")
    example = f", e.g. {survey.orphan_masks[0]}" if survey.orphan_masks else ""
    lines.append(f"  masks without an image: {len(survey.orphan_masks)}{example}")
    masked = survey.splits[eval_split]
    lines.append(f"  evaluation split {eval_split!r}: {masked.masks_found} of {masked.images} images have a mask "
                 f"(scored for seed mIoU / PxAP), {masked.boxed} have boxes (MaxBoxAccV2)")
    return lines


"""ImageNet in the ImageFolder layout: loading and checks, the Neural Predictor hold-out, transforms, loaders.

:func:`load_imagefolder` reads ``ROOT/train/<class>/*.JPEG`` and ``ROOT/val/<class>/*.JPEG`` (the official
validation archive is flat: sort it into one folder per class first) with torchvision's ``ImageFolder``,
which sorts classes and files, so image ``i`` of a split is the same file whatever order the file system
lists them in. A missing root or split, a split without class folders or images, and train and val with
different classes each raise one :class:`~nassearch.errors.DataError`.

Corrupt images: reading one raises DataError naming the file (:func:`read_image`, the loader every
dataset here uses); it is never skipped. Skipping would silently change the images a network trains on,
and deleting the file would shift the image indices and with them the seeded hold-out split, so the
message asks for an intact copy instead. Files are checked when read, not when the dataset loads
(decoding all 1.28 million files up front would cost as much as an epoch's reading). Under DataLoader workers
torch re-raises the DataError in the main process with the worker's traceback appended.

The validation protocol is the Neural Predictor's (Wen et al., 2020, supplementary §3.2): a fixed
hold-out of 50,046 of the 1,281,167 training images validates models during search and is excluded from
their training; models reported on the test set (the official 50,000-image val split) train on all
images. The paper took the last 40 of 1024 random shards; :func:`holdout_split` draws the same number
of images from a seeded permutation.

:func:`write_synthetic_imagefolder` and :func:`write_digits_imagefolder` write small datasets in this
layout as real image files, for tests and learning checks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import find_classes

from nassearch.errors import ConfigError, DataError
from nassearch.training.process import derived_seed
from nassearch.validation import check_seed

#: The two folders of the layout: ``train`` (training and hold-out images) and ``val`` (the test set).
SPLITS = ("train", "val")
#: Per-channel mean and std of the ImageNet training images (the torchvision / ResNet normalisation).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Training images of ILSVRC-2012.
IMAGENET_TRAIN_IMAGES = 1_281_167
#: Training images held out for search-time validation in the Neural Predictor's ImageNet protocol.
NEURAL_PREDICTOR_HOLDOUT = 50_046
#: Where ImageFolder training looks for its dataset unless told otherwise.
DEFAULT_DATA_ROOT = "data/imagenet"
#: Resize-then-crop ratio of evaluation: resize to ``int(size / EVAL_CROP_FRACTION)``, centre-crop ``size``.
EVAL_CROP_FRACTION = 0.875


def read_image(path: str) -> Image.Image:
    """The RGB image in ``path`` (any format PIL reads, whatever its extension); DataError naming the file
    when it cannot be read or decoded (unreadable, not an image, truncated, a decompression bomb)."""
    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        reason = "not an image PIL can identify" if isinstance(exc, Image.UnidentifiedImageError) else str(exc)
        raise DataError(f"cannot read image {path} ({reason}); replace it with an intact copy from the dataset's "
                        "archive (deleting it would shift the image indices and so the hold-out split)") from None


def load_imagefolder(root: str | Path, split: str, transform: Callable | None = None) -> ImageFolder:
    """Split ``split`` (``train`` or ``val``) of the dataset in ``root`` as a torchvision ``ImageFolder`` whose
    items are (``transform``\\ (RGB PIL image), class index), classes and files in sorted order.

    When the other split's folder exists too, both must hold the same class folders (so a class index means
    the same class in both). DataError for a missing root or split, a split without class folders or with a
    class folder without images, and different classes in train and val.
    """
    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is not one of {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image dataset not found: no folder {root}; point the data root at the folder holding "
                        f"{SPLITS[0]}/ and {SPLITS[1]}/ (e.g. {root}/train/n01440764/n01440764_10026.JPEG)")
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{root} has no {split}/ folder; the layout is {root}/{split}/<class>/<image>.JPEG")
    try:
        dataset = ImageFolder(str(folder), transform=transform, loader=read_image)
    except FileNotFoundError as exc:
        if not any(path.is_dir() for path in folder.iterdir()):
            raise DataError(f"{folder} holds no class folders; put each image in the folder of its class "
                            f"({folder}/<class>/<image>.JPEG; ImageNet's val archive is flat: sort it by the "
                            "devkit's labels first)") from None
        raise DataError(f"{folder} has class folders without images: {str(exc).strip()}; add the images or "
                        f"remove the empty folders from {SPLITS[0]}/ and {SPLITS[1]}/ alike") from None
    other = root / SPLITS[1 - SPLITS.index(split)]
    if other.is_dir():
        _check_same_classes(root, {split: dataset.classes, other.name: _class_folders(other)})
    return dataset


def _class_folders(folder: Path) -> list[str]:
    """The sorted class folder names in ``folder`` (none when it has no subfolder)."""
    try:
        return find_classes(folder)[0]
    except FileNotFoundError:
        return []


def _check_same_classes(root: Path, classes: dict[str, list[str]]) -> None:
    """DataError naming the first class (in sorted order) that only one of the two splits of ``root`` has."""
    (name_a, a), (name_b, b) = classes.items()
    differ = sorted(set(a) ^ set(b))
    if differ:
        first = differ[0]
        has, lacks = (name_a, name_b) if first in a else (name_b, name_a)
        raise DataError(f"{root}: {has}/ and {lacks}/ hold different classes: {first} is in {has}/ but not in "
                        f"{lacks}/ ({name_a}/ has {len(a)} class folders, {name_b}/ {len(b)}); both splits need the "
                        "same class folders")


def holdout_split(n_images: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, holdout) indices of ``range(n_images)``, disjoint and each sorted: ``holdout`` images drawn by a
    permutation seeded with ``seed``, the rest for training.

    The Neural Predictor protocol holds out ``NEURAL_PREDICTOR_HOLDOUT`` images. Use one fixed seed for every
    model of a search, so all are validated on the same images. The draw matches
    :func:`~nassearch.training.datasets.train_valid_split`: ``train_valid_split(n, f, s)`` equals
    ``holdout_split(n, h, s)`` where ``h`` is the count that function holds out.
    """
    seed = check_seed(seed)
    if holdout < 0:
        raise ConfigError(f"holdout: must be >= 0 images, got {holdout}")
    if holdout >= n_images:
        raise ConfigError(f"holdout: {holdout:,} images asked for, but the training set has only {n_images:,}; set "
                          f"holdout below {n_images:,} (0 trains on every image)")
    order = np.random.default_rng(seed).permutation(n_images)
    return np.sort(order[holdout:]), np.sort(order[:holdout])


def imagenet_transforms(train: bool, size: int = 224, autoaugment: bool = False, crop_scale: float = 0.08,
                        hflip: bool = True) -> Callable:
    """ResNet preprocessing of PIL images: for training RandomResizedCrop(``size``) of ``crop_scale`` to all of the
    image's area, a random horizontal flip (``hflip``) and, with ``autoaugment``, AutoAugment's ImageNet policy;
    for evaluation resize the short side to
    ``int(size / 0.875)`` and centre-crop ``size``; then ImageNet mean/std normalisation."""
    if size < 1:
        raise ConfigError(f"image size: must be >= 1 pixel, got {size}")
    if autoaugment and not train:
        raise ConfigError("autoaugment: applies to training transforms only; build evaluation transforms without it")
    normalise = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if not train:
        return transforms.Compose([transforms.Resize(int(size / EVAL_CROP_FRACTION)), transforms.CenterCrop(size),
                                   *normalise])
    if not 0 < crop_scale <= 1:
        raise ConfigError(f"crop_scale: must lie in (0, 1], got {crop_scale}")
    augment = [transforms.RandomResizedCrop(size, scale=(crop_scale, 1.0))]
    if hflip:
        augment.append(transforms.RandomHorizontalFlip())
    if autoaugment:
        augment.append(transforms.AutoAugment(transforms.AutoAugmentPolicy.IMAGENET))
    return transforms.Compose([*augment, *normalise])


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int, epoch: int, rank: int = 0,
                world_size: int = 1, num_workers: int = 0, pin_memory: bool = False, drop_last: bool = False
                ) -> DataLoader:
    """A DataLoader over this process's share of ``dataset`` for epoch ``epoch``, ``batch_size`` images a batch.

    The epoch's order is one permutation drawn from (``seed``, ``epoch``) alone (``range(len(dataset))`` when
    not ``shuffle``); process ``rank`` of ``world_size`` reads every ``world_size``-th index of it through a
    DistributedSampler, which pads the order with up to ``world_size - 1`` repeated indices so all shares are
    equal. A resumed run thus sees the same order, and an epoch's order (padding aside) does not depend on the
    number of processes. Worker processes are seeded from (``seed``, ``epoch``, ``rank``), so augmentations in workers
    repeat too; with ``num_workers=0`` they draw from torch's global generator. ``drop_last`` leaves out the
    share's last batch when it is smaller than ``batch_size`` (for training: batch norm needs more than one image).
    Build one loader per epoch.
    """
    seed = check_seed(seed)
    if epoch < 0:
        raise ConfigError(f"epoch: must be >= 0, got {epoch}")
    if batch_size < 1 or num_workers < 0:
        raise ConfigError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside the job's {world_size} process(es); need 0 <= rank < world_size")
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                 seed=derived_seed(seed, epoch))
    return DataLoader(dataset, batch_size, sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                      drop_last=drop_last, generator=torch.Generator().manual_seed(derived_seed(seed, epoch, rank)))


# ---------------------------------------------------------------------------------------------
# Small datasets in the layout, written as real image files


def _new_split_folders(root: Path) -> None:
    """Refuse to write into a dataset that already has a split: its files would mix with the new ones."""
    for split in SPLITS:
        if (root / split).exists():
            raise DataError(f"{root / split} already exists; write the dataset into a new folder")


def write_synthetic_imagefolder(root: str | Path, classes: int = 3, train_per_class: int = 8, val_per_class: int = 4,
                                size: int = 32, seed: int = 0) -> Path:
    """Write a small learnable dataset as ``size`` x ``size`` JPEG files in ``root/{train,val}/<class>/``; return
    ``root``.

    Classes are named like ImageNet's (``n00000000``, ``n00000001``, ...). Each image is a class colour
    striped with a second class colour (stripe direction and period depend on the class) plus noise, so a
    small network tells the classes apart within an epoch or two.
    """
    if min(classes, train_per_class, val_per_class) < 1 or size < 8:
        raise ConfigError(f"need classes, train_per_class, val_per_class >= 1 and size >= 8, got {classes}, "
                          f"{train_per_class}, {val_per_class} and {size}")
    root = Path(root)
    _new_split_folders(root)
    rng = np.random.default_rng(seed)
    background, stripes = rng.uniform(30, 225, size=(2, classes, 3))
    rows, columns = np.indices((size, size))
    for split, count in zip(SPLITS, (train_per_class, val_per_class)):
        for label in range(classes):
            name = f"n{label:08d}"
            folder = root / split / name
            folder.mkdir(parents=True)
            lines = rows if label % 2 == 0 else columns
            mask = ((lines // (2 + label % 3)) % 2 == 1)[..., None]
            for i in range(count):
                pixels = np.where(mask, stripes[label], background[label]) + rng.normal(0, 20, (size, size, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{name}_{i}.JPEG", quality=90)
    return root


def write_digits_imagefolder(root: str | Path, size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write scikit-learn's 1,797 handwritten 8 x 8 digits (bundled with it, no download) as ``size`` x ``size``
    RGB JPEG files in ``root/{train,val}/<digit>/`` (classes ``0``..``9``); return ``root``.

    Digits are upsampled bilinearly and saved at JPEG quality 95, the format ImageNet's files have: the
    decoded pixels differ from the written ones by 0.5/255 on average and at most about 5/255, well below
    one of the 17 grey levels of the source (16/255 apart). A stratified ``val_fraction`` of each digit,
    drawn with ``seed``, goes to ``val/`` (sklearn's ``train_test_split``: ``ceil(1797 * val_fraction)``
    images in all). Needs scikit-learn (a test dependency: ``pip install -e .[dev]``).
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("write_digits_imagefolder needs scikit-learn for its bundled digits; install it with "
                        "pip install scikit-learn (or pip install -e .[dev])") from None
    if not 0 < val_fraction < 1 or size < 8:
        raise ConfigError(f"need 0 < val_fraction < 1 and size >= 8, got {val_fraction} and {size}")
    root = Path(root)
    _new_split_folders(root)
    digits = load_digits()
    train_idx, val_idx = train_test_split(np.arange(len(digits.target)), test_size=val_fraction,
                                          stratify=digits.target, random_state=seed)
    for split, indices in zip(SPLITS, (train_idx, val_idx)):
        for label in range(10):
            (root / split / str(label)).mkdir(parents=True)
        for index in indices:
            grey = Image.fromarray(np.round(digits.images[index] * (255 / 16)).astype(np.uint8))
            image = grey.resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
            image.save(root / split / str(digits.target[index]) / f"{index:04d}.JPEG", quality=95)
    return root

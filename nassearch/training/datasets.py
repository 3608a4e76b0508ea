"""CIFAR-10 data for training evaluators: the loader, the DARTS transforms, Cutout, splits, synthetic data.

:func:`load_cifar10` reads torchvision's on-disk format (``ROOT/cifar-10-batches-py``) through
:class:`CIFAR10`, which unpickles the batch files with an unpickler that builds numpy arrays and plain
data only (a crafted file cannot run code) and checks the files' md5 sums as torchvision does unless
``verify_md5=False``. That switch exists for :func:`write_synthetic_cifar10`, which writes a small
learnable dataset in the same format for tests and smoke runs (its files cannot match the official sums).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from numpy.core.multiarray import _reconstruct
from PIL import Image
from torchvision import transforms
from torchvision.datasets import VisionDataset
from torchvision.datasets.utils import check_integrity, download_and_extract_archive

from nassearch.errors import DataError

#: Per-channel mean and std of the CIFAR-10 training images (as DARTS normalises them).
CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
BATCH_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = 5
#: torchvision's CIFAR-10 class, for the official file names, md5 sums and download address only.
_OFFICIAL = torchvision.datasets.CIFAR10


class Cutout:
    """Cutout (DeVries & Taylor, 2017): zero one ``length`` x ``length`` square of a (C, H, W) tensor.

    The square is centred at a pixel drawn uniformly from the image and clipped at its borders, so it
    covers less than ``length**2`` pixels near an edge. Apply it after normalisation. ``generator``
    draws the centres (torch's default generator when None); ``length`` 0 leaves images unchanged.
    """

    def __init__(self, length: int, generator: torch.Generator | None = None) -> None:
        if length < 0:
            raise ValueError(f"cutout length must be >= 0, got {length}")
        self.length = length
        self.generator = generator

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.length == 0:
            return image
        height, width = image.shape[-2:]
        y = int(torch.randint(height, (1,), generator=self.generator))
        x = int(torch.randint(width, (1,), generator=self.generator))
        return self.apply_at(image, y, x)

    def apply_at(self, image: torch.Tensor, y: int, x: int) -> torch.Tensor:
        """A copy of ``image`` with the square centred at row ``y``, column ``x`` set to zero."""
        half = self.length // 2
        out = image.clone()
        out[..., max(y - half, 0):max(y + self.length - half, 0), max(x - half, 0):max(x + self.length - half, 0)] = 0
        return out

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


def cifar10_transforms(train: bool, cutout_length: int = 0) -> Callable:
    """The DARTS CIFAR-10 transforms: for training random crop (padding 4) and horizontal flip, then
    normalisation and, when ``cutout_length`` > 0, Cutout; for testing normalisation only."""
    normalise = [transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)]
    if not train:
        return transforms.Compose(normalise)
    augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *normalise]
    if cutout_length > 0:
        augment.append(Cutout(cutout_length))
    return transforms.Compose(augment)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batches: plain containers, strings, bytes, numbers and numpy arrays only.

    The python version of CIFAR-10 is a set of pickles; an ordinary unpickler runs whatever a file names.
    Only the globals numpy's array pickles name are resolved (the official files, written by numpy 1,
    name ``numpy.core.multiarray._reconstruct``; numpy 2 writes ``numpy._core``); anything else is refused.
    """

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch never holds")
        return self.ALLOWED[module, name]


def _fix(path: Path) -> str:
    """How to replace a bad file of the dataset in ``path``'s folder."""
    return f"delete {path.parent} and set download: true, or copy the official {BATCH_FOLDER} there"


def _read_pickle(path: Path, md5: str | None) -> object:
    """The payload of one batch file, its md5 checked first when ``md5`` is given; DataError naming the file."""
    if not path.is_file():
        raise DataError(f"CIFAR-10 in {path.parent} is incomplete: {path.name} is missing; {_fix(path)}")
    if md5 is not None and not check_integrity(str(path), md5):
        raise DataError(f"CIFAR-10 file {path} is corrupt (md5 mismatch); {_fix(path)} (data from "
                        "write_synthetic_cifar10 needs verify_md5: false)")
    try:
        with path.open("rb") as handle:
            return _BatchUnpickler(handle, encoding="latin1").load()
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 file {path}: {exc.strerror or exc}") from None
    except pickle.UnpicklingError as exc:
        raise DataError(f"CIFAR-10 file {path} is refused as unsafe or damaged: {exc}; {_fix(path)}") from None
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            MemoryError) as exc:
        raise DataError(f"CIFAR-10 file {path} is not a CIFAR-10 pickle ({type(exc).__name__}: {exc}); "
                        f"{_fix(path)}") from None


def _read_batch(path: Path, md5: str | None) -> tuple[np.ndarray, list[int]]:
    """Images (n, 3072) uint8 and labels of one batch file, checked for shape, type and range."""
    batch = _read_pickle(path, md5)
    data = batch.get("data") if isinstance(batch, dict) else None
    labels = batch.get("labels") if isinstance(batch, dict) else None
    if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32
            or not isinstance(labels, list) or len(labels) != len(data)
            or not all(type(label) is int and 0 <= label < len(CIFAR10_CLASSES) for label in labels)):
        raise DataError(f"CIFAR-10 file {path} is not a CIFAR-10 batch (a mapping with 'data', uint8 images of "
                        f"{3 * 32 * 32} values, and one label in 0..9 per image); {_fix(path)}")
    return data, labels


class CIFAR10(VisionDataset):
    """CIFAR-10 from ``ROOT/cifar-10-batches-py``, torchvision's on-disk format, read without running pickles.

    The batch files are unpickled by :class:`_BatchUnpickler` (numpy arrays and plain data only) and
    checked for shape and labels. With ``verify_md5=True`` (the default) each file's md5 must also be the
    official one, as torchvision checks it; False accepts other data in that format (for datasets written
    by :func:`write_synthetic_cifar10`). Items are (PIL image, label), as torchvision's class gives them.
    """

    def __init__(self, root: str | Path, train: bool = True, transform: Callable | None = None,
                 download: bool = False, verify_md5: bool = True) -> None:
        super().__init__(root, transform=transform)
        self.train = train
        folder = Path(root) / BATCH_FOLDER
        files = {name: md5 if verify_md5 else None for name, md5 in _OFFICIAL.train_list + _OFFICIAL.test_list}
        files[_OFFICIAL.meta["filename"]] = _OFFICIAL.meta["md5"] if verify_md5 else None
        if download and not all(check_integrity(str(folder / name), md5) for name, md5 in files.items()):
            try:
                download_and_extract_archive(_OFFICIAL.url, str(root), filename=_OFFICIAL.filename,
                                             md5=_OFFICIAL.tgz_md5)
            except (OSError, RuntimeError) as exc:  # no network, disk full, archive md5 mismatch
                raise DataError(f"cannot download CIFAR-10 to {root}: {exc}; download it elsewhere and put the "
                                f"extracted {BATCH_FOLDER} folder under {root}") from None
        if not folder.is_dir():
            raise DataError(f"CIFAR-10 not found: no {folder}; set download: true in the config, or put the "
                            f"extracted {BATCH_FOLDER} folder under {root}")
        names = [name for name, _ in (_OFFICIAL.train_list if train else _OFFICIAL.test_list)]
        batches = [_read_batch(folder / name, files[name]) for name in names]
        self.data = np.concatenate([data for data, _ in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = [label for _, labels in batches for label in labels]
        meta_path = folder / _OFFICIAL.meta["filename"]
        meta = _read_pickle(meta_path, files[meta_path.name])
        classes = meta.get("label_names") if isinstance(meta, dict) else None
        if not (isinstance(classes, list) and len(classes) == len(CIFAR10_CLASSES)
                and all(isinstance(name, str) for name in classes)):
            raise DataError(f"CIFAR-10 file {meta_path} does not list the {len(CIFAR10_CLASSES)} class names "
                            f"(label_names); {_fix(meta_path)}")
        self.classes = classes
        self.class_to_idx = {name: i for i, name in enumerate(classes)}

    def __getitem__(self, index: int) -> tuple[object, int]:
        image = Image.fromarray(self.data[index])
        return (image if self.transform is None else self.transform(image)), self.targets[index]

    def __len__(self) -> int:
        return len(self.data)


class TransformedSubset(torch.utils.data.Dataset):
    """The images ``indices`` of ``dataset`` (which yields PIL images) with their own ``transform``;
    two views of one loaded dataset can then be augmented differently (training vs validation)."""

    def __init__(self, dataset: torch.utils.data.Dataset, indices: np.ndarray | list[int] | range,
                 transform: Callable | None = None) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[object, int]:
        image, label = self.dataset[int(self.indices[item])]
        return (image if self.transform is None else self.transform(image)), label


def load_cifar10(root: str | Path, train: bool, download: bool = False, transform: Callable | None = None,
                 verify_md5: bool = True) -> CIFAR10:
    """The CIFAR-10 training (50,000 images) or test (10,000) set from ``root/cifar-10-batches-py``.

    A missing, corrupt or unsafe dataset raises DataError saying which file and how to get a good one.
    """
    return CIFAR10(root, train=train, transform=transform, download=download, verify_md5=verify_md5)


def train_valid_split(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic random split of ``range(n)`` into (train, valid) indices, each sorted;
    ``round(n * valid_fraction)`` images (at least one of each side) are held out."""
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must lie strictly between 0 and 1, got {valid_fraction}")
    if n < 2:
        raise ValueError(f"cannot split {n} image(s) into train and valid parts")
    n_valid = min(max(round(n * valid_fraction), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def write_synthetic_cifar10(root: str | Path, n_train: int = 500, n_test: int = 100, seed: int = 0) -> Path:
    """Write a small synthetic CIFAR-10 in torchvision's format under ``root``; return its folder.

    ``n_train`` images go into ``data_batch_1..5`` (split as evenly as possible) and ``n_test`` into
    ``test_batch``; labels cycle through the 10 classes. Each image is noise around a colour that
    depends on its class, so a network learns it within an epoch. Load it with ``verify_md5=False``.
    """
    if n_train < TRAIN_BATCHES or n_test < 1:
        raise ValueError(f"need n_train >= {TRAIN_BATCHES} and n_test >= 1, got {n_train} and {n_test}")
    rng = np.random.default_rng(seed)
    palette = rng.uniform(40, 215, size=(len(CIFAR10_CLASSES), 3))
    folder = Path(root) / BATCH_FOLDER
    folder.mkdir(parents=True, exist_ok=True)

    def images(count: int) -> dict[str, object]:
        labels = np.arange(count) % len(CIFAR10_CLASSES)
        rng.shuffle(labels)
        pixels = palette[labels][:, :, None] + rng.normal(0, 30, size=(count, 3, 32 * 32))
        data = np.clip(pixels, 0, 255).astype(np.uint8).reshape(count, 3 * 32 * 32)
        return {"data": data, "labels": labels.tolist()}

    files = {f"data_batch_{i + 1}": images(len(part))
             for i, part in enumerate(np.array_split(np.arange(n_train), TRAIN_BATCHES))}
    files["test_batch"] = images(n_test)
    files["batches.meta"] = {"label_names": list(CIFAR10_CLASSES), "num_vis": 3 * 32 * 32}
    for name, payload in files.items():
        with (folder / name).open("wb") as handle:
            pickle.dump(payload, handle, protocol=4)  # numpy arrays as _reconstruct calls, as _BatchUnpickler reads
    return folder

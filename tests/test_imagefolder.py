"""ImageNet-layout data: loading and its checks, corrupt files, the Neural Predictor hold-out, transforms,
per-epoch loaders, and the synthetic and digits writers."""

import os
import re

import numpy as np
import pytest
import torch
import torchvision.datasets.folder
from PIL import Image

from nassearch.errors import ConfigError, DataError
from nassearch.training.datasets import TransformedSubset, train_valid_split
from nassearch.training.imagefolder import (IMAGENET_MEAN, IMAGENET_STD, IMAGENET_TRAIN_IMAGES,
                                            NEURAL_PREDICTOR_HOLDOUT, holdout_split, imagenet_transforms,
                                            load_imagefolder, make_loader, write_digits_imagefolder,
                                            write_synthetic_imagefolder)


@pytest.fixture
def synthetic(tmp_path):
    return write_synthetic_imagefolder(tmp_path / "data", classes=3, train_per_class=8, val_per_class=4, size=32)


# ---------------------------------------------------------------------------------------------
# Layout and checks


def test_synthetic_dataset_loads_in_the_imagenet_layout(synthetic):
    train, val = load_imagefolder(synthetic, "train"), load_imagefolder(synthetic, "val")
    assert train.classes == val.classes == ["n00000000", "n00000001", "n00000002"]
    assert len(train) == 24 and len(val) == 12
    assert np.bincount(train.targets).tolist() == [8, 8, 8] and np.bincount(val.targets).tolist() == [4, 4, 4]
    path, label = train.samples[9]
    assert path == str(synthetic / "train" / "n00000001" / "n00000001_1.JPEG") and label == 1
    image, label = train[9]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (32, 32) and label == 1
    with open(path, "rb") as handle:
        assert handle.read(3) == b"\xff\xd8\xff"  # a real JPEG file


def test_synthetic_classes_differ_in_colour(synthetic):
    train = load_imagefolder(synthetic, "train")
    means = np.stack([np.mean([np.asarray(train[i][0], dtype=float).mean(axis=(0, 1))
                               for i in range(len(train)) if train.targets[i] == c], axis=0) for c in range(3)])
    assert min(np.abs(means[i] - means[j]).max() for i in range(3) for j in range(i)) > 10


def test_the_order_is_sorted_whatever_the_file_system_lists(synthetic, monkeypatch):
    expected = load_imagefolder(synthetic, "train").samples
    assert [path for path, _ in expected] == sorted(path for path, _ in expected)
    calls = []

    class ReversedListing:
        """``os`` as torchvision's folder module sees it, listing every directory backwards."""

        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def scandir(path):
            calls.append(path)
            with os.scandir(path) as entries:
                return iter(list(entries)[::-1])

        @staticmethod
        def walk(top, **kwargs):
            for root, dirs, files in os.walk(top, **kwargs):
                calls.append(root)
                dirs.reverse()
                yield root, dirs, files[::-1]

    monkeypatch.setattr(torchvision.datasets.folder, "os", ReversedListing())
    reloaded = load_imagefolder(synthetic, "train")
    assert calls and reloaded.samples == expected
    holdout = holdout_split(len(reloaded), 5, 3)[1]
    assert [reloaded.samples[i] for i in holdout] == [expected[i] for i in holdout_split(len(expected), 5, 3)[1]]


def test_missing_root_and_missing_split_name_the_folder(tmp_path, synthetic):
    with pytest.raises(DataError, match=r"no folder .*nowhere; point the data root at the folder holding train/"):
        load_imagefolder(tmp_path / "nowhere", "train")
    (synthetic / "val").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=r"data has no val/ folder; the layout is .*/val/<class>/<image>.JPEG"):
        load_imagefolder(synthetic, "val")
    assert len(load_imagefolder(synthetic, "train")) == 24  # train alone loads: nothing to compare it with
    with pytest.raises(ConfigError, match="split: 'test' is not one of train, val"):
        load_imagefolder(synthetic, "test")


def test_a_flat_split_without_class_folders_is_refused(tmp_path):
    (tmp_path / "val").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match=r"val holds no class folders; .*val archive is flat") as error:
        load_imagefolder(tmp_path, "val")
    assert "\n" not in str(error.value)


def test_a_class_folder_without_images_is_refused(synthetic):
    for path in (synthetic / "train" / "n00000001").iterdir():
        path.rename(path.with_suffix(".txt"))  # not an image extension
    with pytest.raises(DataError, match=r"train has class folders without images: .*n00000001.*remove the empty "):
        load_imagefolder(synthetic, "train")


def test_train_and_val_with_different_classes_name_the_first_difference(synthetic):
    (synthetic / "val" / "n00000001").rename(synthetic / "val" / "n00000009")
    message = (r"train/ and val/ hold different classes: n00000001 is in train/ but not in val/ "
               r"\(train/ has 3 class folders, val/ 3\)")
    with pytest.raises(DataError, match=message):
        load_imagefolder(synthetic, "train")
    (synthetic / "val" / "n00000009").rename(synthetic / "val" / "n00000001")
    (synthetic / "train" / "n00000000").rename(synthetic / "train" / "n00000005")
    with pytest.raises(DataError, match=r"n00000000 is in val/ but not in train/ \(val/ has 3 class folders, train/ 3"):
        load_imagefolder(synthetic, "val")


def test_missing_classes_are_counted(synthetic):
    for path in (synthetic / "val" / "n00000002").iterdir():
        path.unlink()
    (synthetic / "val" / "n00000002").rmdir()
    with pytest.raises(DataError, match=r"n00000002 is in train/ but not in val/ \(train/ has 3 class folders, val/ 2"):
        load_imagefolder(synthetic, "train")


@pytest.mark.parametrize("damage, reason", [
    (lambda path: path.write_bytes(b"this is not a JPEG"), "not an image PIL can identify"),
    (lambda path: path.write_bytes(path.read_bytes()[:400]), "Truncated File Read"),
    (lambda path: path.write_bytes(path.read_bytes()[:-10]), r"image file is truncated \(\d+ bytes not processed\)"),
], ids=["not-an-image", "cut-in-half", "end-missing"])
def test_a_corrupt_image_raises_naming_the_file_when_read(synthetic, damage, reason):
    train = load_imagefolder(synthetic, "train", transform=imagenet_transforms(False, size=16))
    bad = synthetic / "train" / "n00000002" / "n00000002_3.JPEG"
    damage(bad)
    index = train.samples.index((str(bad), 2))
    assert train[index - 1][0].shape == (3, 16, 16)  # the others read as before
    message = rf"cannot read image {re.escape(str(bad))} \({reason}\); replace it with an intact copy"
    with pytest.raises(DataError, match=message) as error:
        train[index]
    assert "\n" not in str(error.value)
    with pytest.raises(DataError, match="n00000002_3.JPEG"):
        list(make_loader(train, 8, shuffle=False, seed=0, epoch=0))


# ---------------------------------------------------------------------------------------------
# The Neural Predictor hold-out


def test_holdout_split_is_a_deterministic_partition():
    train, holdout = holdout_split(1000, 37, 5)
    assert len(train) == 963 and len(holdout) == 37 and train.dtype == holdout.dtype == np.int64
    assert np.array_equal(np.sort(np.concatenate([train, holdout])), np.arange(1000))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(holdout) > 0)
    again = holdout_split(1000, 37, 5)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], holdout)
    assert not np.array_equal(holdout_split(1000, 37, 6)[1], holdout)
    assert np.array_equal(holdout_split(1000, 100, 5)[1], train_valid_split(1000, 0.1, 5)[1])  # the same draw
    train, holdout = holdout_split(10, 0, 1)
    assert np.array_equal(train, np.arange(10)) and holdout.size == 0


def test_the_neural_predictor_holdout_of_imagenet():
    train, holdout = holdout_split(IMAGENET_TRAIN_IMAGES, NEURAL_PREDICTOR_HOLDOUT, 0)
    assert len(holdout) == 50_046 and len(train) == 1_281_167 - 50_046
    assert np.intersect1d(train, holdout).size == 0 and holdout[-1] < IMAGENET_TRAIN_IMAGES


def test_a_holdout_larger_than_the_training_set_is_refused():
    with pytest.raises(ConfigError, match=r"holdout: 50,046 images asked for, but the training set has only 24; "
                                          r"set holdout below 24 \(0 trains on every image\)"):
        holdout_split(24, NEURAL_PREDICTOR_HOLDOUT, 0)
    with pytest.raises(ConfigError, match="only 24"):
        holdout_split(24, 24, 0)
    with pytest.raises(ConfigError, match="holdout: must be >= 0"):
        holdout_split(24, -1, 0)
    with pytest.raises(ConfigError, match="seed"):
        holdout_split(24, 2, -1)


# ---------------------------------------------------------------------------------------------
# Transforms


@pytest.mark.parametrize("train, autoaugment", [(True, False), (True, True), (False, False)])
def test_transforms_give_normalised_crops_of_the_size(train, autoaugment):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    transform = imagenet_transforms(train, size=224, autoaugment=autoaugment)
    torch.manual_seed(0)
    out = transform(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    names = [type(step).__name__ for step in transform.transforms]
    assert ("AutoAugment" in names) == autoaugment
    assert names[-2:] == ["ToTensor", "Normalize"]


def test_evaluation_resizes_to_size_over_0_875_then_centre_crops():
    transform = imagenet_transforms(False, size=224)
    resize, crop = transform.transforms[:2]
    assert resize.size == 256 and crop.size == (224, 224)
    grey = Image.new("RGB", (500, 300), (128, 128, 128))
    out = transform(grey)
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(out.mean(dim=(1, 2)), expected, atol=1e-5)
    assert imagenet_transforms(False, size=32).transforms[0].size == 36


def test_training_transforms_augment_and_autoaugment_uses_the_imagenet_policy():
    transform = imagenet_transforms(True, size=64, autoaugment=True)
    names = [type(step).__name__ for step in transform.transforms]
    assert names[:3] == ["RandomResizedCrop", "RandomHorizontalFlip", "AutoAugment"]
    assert transform.transforms[2].policy == torchvision.transforms.AutoAugmentPolicy.IMAGENET
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 80, 3), dtype=np.uint8))
    torch.manual_seed(0)
    first, second = transform(image), transform(image)
    assert not torch.equal(first, second)
    with pytest.raises(ConfigError, match="autoaugment: applies to training transforms only"):
        imagenet_transforms(False, autoaugment=True)
    with pytest.raises(ConfigError, match="image size"):
        imagenet_transforms(True, size=0)


def test_crop_scale_and_hflip_shape_the_training_crop():
    crop, *rest = imagenet_transforms(True, size=16, crop_scale=0.5, hflip=False).transforms
    assert crop.scale == (0.5, 1.0) and [type(step).__name__ for step in rest] == ["ToTensor", "Normalize"]
    assert imagenet_transforms(True, size=16).transforms[0].scale == (0.08, 1.0)  # Inception's, torchvision's default
    with pytest.raises(ConfigError, match=r"crop_scale: must lie in \(0, 1\], got 1.5"):
        imagenet_transforms(True, crop_scale=1.5)


# ---------------------------------------------------------------------------------------------
# Loaders


def order(loader):
    return torch.cat([batch for batch in loader]).tolist()


def test_the_order_of_an_epoch_depends_on_seed_and_epoch_only():
    data = list(range(50))
    first = order(make_loader(data, 8, shuffle=True, seed=3, epoch=4))
    torch.manual_seed(123)  # the global generator plays no part
    assert order(make_loader(data, 8, shuffle=True, seed=3, epoch=4)) == first
    assert sorted(first) == data and first != data
    assert order(make_loader(data, 8, shuffle=True, seed=3, epoch=5)) != first
    assert order(make_loader(data, 8, shuffle=True, seed=4, epoch=4)) != first
    assert order(make_loader(data, 8, shuffle=True, seed=4, epoch=3)) != first  # not a function of seed + epoch
    assert order(make_loader(data, 8, shuffle=False, seed=3, epoch=4)) == data
    loader = make_loader(data, 8, shuffle=True, seed=3, epoch=4)
    assert order(loader) == order(loader) == first


def test_distributed_shards_are_disjoint_cover_the_set_and_share_one_order():
    data = list(range(50))
    whole = order(make_loader(data, 5, shuffle=True, seed=7, epoch=2))
    shards = [order(make_loader(data, 5, shuffle=True, seed=7, epoch=2, rank=rank, world_size=2)) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 25 and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == data
    assert shards[0] == whole[0::2] and shards[1] == whole[1::2]
    odd = [order(make_loader(list(range(7)), 2, shuffle=True, seed=0, epoch=0, rank=rank, world_size=2))
           for rank in (0, 1)]
    assert len(odd[0]) == len(odd[1]) == 4 and set(odd[0] + odd[1]) == set(range(7))  # padded by one repeat


def test_loader_workers_pinned_memory_and_bad_settings(synthetic):
    train = load_imagefolder(synthetic, "train")
    view = TransformedSubset(train, holdout_split(len(train), 4, 0)[0], imagenet_transforms(True, size=16))
    loader = make_loader(view, 10, shuffle=True, seed=0, epoch=0, num_workers=1, pin_memory=False)
    assert loader.num_workers == 1
    batches = [(images.shape, labels.shape) for images, labels in loader]
    assert batches == [((10, 3, 16, 16), (10,)), ((10, 3, 16, 16), (10,))]
    assert make_loader(view, 10, True, 0, 0, pin_memory=True).pin_memory
    with pytest.raises(ConfigError, match="rank 2 is outside the job's 2 process"):
        make_loader(view, 4, True, 0, 0, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        make_loader(view, 0, True, 0, 0)
    with pytest.raises(ConfigError, match="epoch: must be >= 0"):
        make_loader(view, 4, True, 0, -1)


# ---------------------------------------------------------------------------------------------
# The digits writer


def test_digits_are_written_as_1797_images_in_10_classes_with_a_stratified_split(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    root = write_digits_imagefolder(tmp_path, size=32, val_fraction=0.2, seed=0)
    train, val = load_imagefolder(root, "train"), load_imagefolder(root, "val")
    assert train.classes == val.classes == [str(d) for d in range(10)]
    assert len(train) == 1437 and len(val) == 360 and len(train) + len(val) == 1797
    per_class = np.bincount(load_digits().target)
    assert np.all(np.abs(np.bincount(val.targets) - 0.2 * per_class) <= 1)
    names = {path.rsplit("/", 1)[1] for path, _ in train.samples + val.samples}
    assert len(names) == 1797 and all(name.endswith(".JPEG") for name in names)
    path, label = val.samples[0]
    image = train.loader(path)
    assert image.size == (32, 32) and image.mode == "RGB"
    digit = load_digits().images[int(path.rsplit("/", 1)[1][:4])]
    small = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=float)
    assert np.corrcoef(small.ravel(), digit.ravel())[0, 1] > 0.9  # the digit itself, upsampled
    with pytest.raises(DataError, match="already exists; write the dataset into a new folder"):
        write_digits_imagefolder(tmp_path)

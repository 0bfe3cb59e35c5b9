"""Image datasets for ARAL: registry, loading, validation and preprocessing.

A dataset is either a prepared TFDS dataset (`--dataset=mnist`), the user's own
`.npz` file for a registered dataset (`--dataset=mnist --data_file=PATH.npz`),
or a free-standing `.npz` file (`--dataset=PATH.npz`). An `.npz` holds four
arrays: `x_train`, `x_test` (uint8 [N, H, W, C]) and `y_train`, `y_test`
(integer [N]); other arrays are ignored. Images have sides of at most
MAX_IMAGE_SIDE pixels and 1 or 3 channels; read from an .npz, the class count
is the largest label + 1, at most MAX_UNUSED_CLASSES above the number of
distinct labels. Every problem with the input is raised as `DataError` with a
one-line message naming the flag and the file. (A folder of the user's own
image files, with an unlabeled pool, is read by aral_tf/image_folders.py.)
"""

import dataclasses
import os
import zipfile
import zlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from aral_tf import resources
from aral_tf.cli import one_line

DEMO_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo", "mnist_demo.npz")

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")

# Errors numpy raises for a missing, unreadable or non-numpy file, for an
# array that would need pickle, or for one too large for memory.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, MemoryError)

# Rows of the 218x178 CelebA image kept by the centre crop to 178x178.
_CELEBA_CROP_ROWS = (20, 198)

_TFDS_BATCH_SIZE = 1024

MAX_IMAGE_SIDE = 1024
# Class indices 0..max(label) that no image of an .npz may leave without an image: a few classes
# missing from a sample are fine, a stray label of 10,000,000 is not.
MAX_UNUSED_CLASSES = 100

# How a .npy and an .npz (a zip archive) begin.
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


class DataError(ValueError):
    """A user-facing input problem; str(e) is one line naming the flag or file."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset and where TFDS keeps it."""

    name: str
    tfds_name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    train_split: str
    test_split: str
    class_names: tuple[str, ...] | None


_DIGITS = tuple(str(digit) for digit in range(10))
_CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

DATASETS = {
    spec.name: spec
    for spec in (
        DatasetSpec("mnist", "mnist", (28, 28, 1), 10, "train", "test", _DIGITS),
        DatasetSpec("svhn", "svhn_cropped", (32, 32, 3), 10, "train", "test", _DIGITS),
        DatasetSpec("cifar10", "cifar10", (32, 32, 3), 10, "train", "test", _CIFAR10_NAMES),
        DatasetSpec("celeba", "celeb_a", (64, 64, 3), 2, "train", "test", ("female", "male")),
        DatasetSpec("imagenet", "imagenet2012", (224, 224, 3), 1000, "train", "validation", None),
    )
}

ALIASES = {
    **{name: name for name in DATASETS},
    **{spec.tfds_name: name for name, spec in DATASETS.items()},
}


def resolve_dataset(name: str) -> DatasetSpec | None:
    """Spec for a registered name or alias; None for a path ending in .npz."""
    if name.lower().endswith(".npz"):
        return None
    if name not in ALIASES:
        raise DataError(
            f"--dataset={name}: unknown dataset; choose one of {', '.join(DATASETS)}, "
            "a path to an .npz file, or a folder of images (pool/ and test/)"
        )
    return DATASETS[ALIASES[name]]


@dataclasses.dataclass(frozen=True, eq=False)
class ImageData:
    """Validated train (the pool) and test images with int64 labels.

    `y_train` is None for a pool without labels (a folder of images, aral_tf/image_folders.py), which
    only a person can label (--oracle=files); `pool_files` then names each pool image's file.
    """

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] | None
    pool_files: tuple[str, ...] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(self.x_train.shape[1:])

    @property
    def pool_size(self) -> int:
        """Number of training images."""
        return len(self.x_train)



def _load_numpy(path: str, prefix: str, kind: str):
    """np.load without pickle; a missing or unreadable file becomes a one-line DataError.

    A file that is neither a .npy nor a zip archive is refused before numpy's own guess (a pickle).
    """
    try:
        with open(path, "rb") as stream:
            start = stream.read(len(_NPY_MAGIC))
        if start.startswith((_NPY_MAGIC, _ZIP_MAGIC)):
            return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{prefix}no such file") from None
    except _READ_ERRORS as error:
        raise _read_error(f"{prefix}not a readable {kind} file", error) from None
    raise DataError(f"{prefix}not an {kind} file (it starts with {start[:4]!r}, not as np.save or np.savez "
                    "write)")


def _read_error(what: str, error: Exception) -> DataError:
    """`what` and numpy's reason, except its advice to load pickled data (never done here)."""
    if isinstance(error, ValueError) and "pickle" in str(error):
        return DataError(f"{what} (it holds pickled Python objects, which are never loaded; save numeric "
                         "arrays)")
    return DataError(f"{what} ({one_line(error)})")


def _stored_shape(archive, key: str):
    """The shape of archive[key] from its .npy header alone (nothing is read); None if not told there."""
    try:
        with archive.zip.open(f"{key}.npy") as stream:
            version = np.lib.format.read_magic(stream)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                return None
            shape, _, dtype = readers[version](stream)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None
    return shape, dtype


def npz_image_shape(path: str):
    """(H, W, C) of an .npz's x_train from its header alone; None when the file or header cannot tell
    (the loader then says why)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = _stored_shape(archive, "x_train")
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError):
        return None
    if stored is None or len(stored[0]) != 4:
        return None
    return tuple(int(size) for size in stored[0][1:])


def _check_fits_in_memory(archive, prefix: str):
    """Refuses an .npz whose arrays, by their headers, need more memory than is available."""
    needed = 0
    for key in NPZ_ARRAYS:
        stored = _stored_shape(archive, key)
        if stored is None:
            return
        shape, dtype = stored
        needed += int(np.prod(shape, dtype=object)) * dtype.itemsize
    available = resources.available_memory()
    if available is not None and needed > available:
        raise DataError(f"{prefix}its arrays need {resources.size_text(needed)} of memory, "
                        f"{resources.size_text(available)} is available")


def _shape_text(shape) -> str:
    return "x".join(str(size) for size in shape)


def _validated(arrays: dict, prefix: str, num_classes: int | None, class_names) -> ImageData:
    """Checks dtypes, shapes and label ranges; `prefix` starts every error."""
    for images_key, labels_key in (("x_train", "y_train"), ("x_test", "y_test")):
        images, labels = arrays[images_key], arrays[labels_key]
        if images.dtype != np.uint8:
            raise DataError(f"{prefix}{images_key} has dtype {images.dtype}; images must be uint8")
        if images.ndim != 4:
            raise DataError(
                f"{prefix}{images_key} has shape {images.shape}; images must be rank 4 [N, H, W, C]"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"{prefix}{labels_key} has dtype {labels.dtype}; labels must be integers"
            )
        if labels.ndim != 1:
            raise DataError(
                f"{prefix}{labels_key} has shape {labels.shape}; labels must be rank 1 [N]"
            )
        if len(images) != len(labels):
            raise DataError(
                f"{prefix}{images_key} has {len(images)} images "
                f"but {labels_key} has {len(labels)} labels"
            )
        if not len(images):
            raise DataError(f"{prefix}{images_key} is empty")
    train_shape, test_shape = arrays["x_train"].shape[1:], arrays["x_test"].shape[1:]
    if train_shape != test_shape:
        raise DataError(
            f"{prefix}x_train images are {_shape_text(train_shape)} "
            f"but x_test images are {_shape_text(test_shape)}"
        )
    if max(train_shape[:2]) > MAX_IMAGE_SIDE:
        raise DataError(f"{prefix}images are {_shape_text(train_shape)}; their sides may be at most "
                        f"{MAX_IMAGE_SIDE} pixels")
    if train_shape[-1] not in (1, 3):
        raise DataError(f"{prefix}images have {train_shape[-1]} channels; expected 1 or 3")
    for labels_key in ("y_train", "y_test"):
        smallest = arrays[labels_key].min()
        if smallest < 0:
            raise DataError(f"{prefix}{labels_key} contains label {smallest}; labels must be >= 0")
    if num_classes is None:
        num_classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
        if num_classes < 2:
            raise DataError(f"{prefix}all labels are 0; need at least 2 classes")
        distinct = len(np.union1d(arrays["y_train"], arrays["y_test"]))
        if num_classes - distinct > MAX_UNUSED_CLASSES:
            raise DataError(f"{prefix}the largest label is {num_classes - 1} but only {distinct} distinct labels "
                            f"appear; labels must be class indices 0..K-1 with at most {MAX_UNUSED_CLASSES} "
                            "of them unused")
    for labels_key in ("y_train", "y_test"):
        largest = arrays[labels_key].max()
        if largest >= num_classes:
            raise DataError(
                f"{prefix}{labels_key} contains label {largest}, outside [0, {num_classes})"
            )
    return ImageData(
        x_train=arrays["x_train"],
        y_train=arrays["y_train"].astype(np.int64),
        x_test=arrays["x_test"],
        y_test=arrays["y_test"].astype(np.int64),
        num_classes=num_classes,
        class_names=None if class_names is None else tuple(class_names),
    )


def load_npz(
    path: str, flag: str = "--data_file", num_classes: int | None = None, class_names=None
) -> ImageData:
    """Reads and validates an .npz of x_train, y_train, x_test, y_test.

    With `num_classes=None` the class count is max(label) + 1 over both splits.
    Errors are `DataError`s starting with f"{flag}={path}: ".
    """
    prefix = f"{flag}={path}: "
    archive = _load_numpy(path, prefix, ".npz")
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{prefix}holds a single array; expected an .npz archive (np.savez)")
    with archive:
        missing = [key for key in NPZ_ARRAYS if key not in archive.files]
        if missing:
            raise DataError(
                f"{prefix}missing array {', '.join(missing)}; "
                f"an .npz needs {', '.join(NPZ_ARRAYS)}"
            )
        _check_fits_in_memory(archive, prefix)
        try:
            arrays = {key: archive[key] for key in NPZ_ARRAYS}
        except _READ_ERRORS as error:
            raise _read_error(f"{prefix}cannot read arrays", error) from None
    return _validated(arrays, prefix, num_classes, class_names)


def resize_uint8(image, height: int, width: int):
    """Antialiased bilinear resize of a uint8 image to height x width, rounded back to uint8.

    Used for TFDS images of another size and for images sent to the exported models.
    """
    resized = tf.image.resize(image, (height, width), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _tfds_converter(spec: DatasetSpec):
    """Maps a TFDS example to (uint8 image of spec.image_shape, int64 label)."""
    height, width, _ = spec.image_shape

    def convert(example):
        image = example["image"]
        if spec.tfds_name == "celeb_a":
            image = image[_CELEBA_CROP_ROWS[0]:_CELEBA_CROP_ROWS[1]]
            label = tf.cast(example["attributes"]["Male"], tf.int64)
        else:
            label = tf.cast(example["label"], tf.int64)
        if tuple(image.shape[:2]) != (height, width):
            image = resize_uint8(image, height, width)
        return image, label

    return convert


def _read_split(builder, split: str, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    dataset = (
        builder.as_dataset(split=split, shuffle_files=False)
        .map(_tfds_converter(spec), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(_TFDS_BATCH_SIZE)
    )
    batches = list(tfds.as_numpy(dataset))
    if not batches:
        return np.zeros((0, *spec.image_shape), np.uint8), np.zeros((0,), np.int64)
    return (
        np.concatenate([images for images, _ in batches]),
        np.concatenate([labels for _, labels in batches]),
    )


def load_tfds(spec: DatasetSpec, data_dir: str | None) -> ImageData:
    """Reads both splits of a prepared TFDS dataset into memory; never downloads.

    Labels are `label`, except CelebA: attribute `Male` (0 female, 1 male), with
    the 218x178 image centre-cropped to rows 20..198 and resized to 64x64.
    Other images whose size differs from `spec.image_shape` are resized to it
    (ImageNet to 224x224). The full ImageNet train split does not fit in memory
    this way; it needs streaming.
    """
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        raise DataError(
            f"--dataset={spec.name}: TFDS dataset {spec.tfds_name} is not prepared in "
            f"--data_dir={data_dir or builder.data_dir_root}; prepare it with tfds "
            "(download_and_prepare) or pass --data_file=PATH.npz"
        )
    x_train, y_train = _read_split(builder, spec.train_split, spec)
    x_test, y_test = _read_split(builder, spec.test_split, spec)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _validated(arrays, f"--dataset={spec.name}: ", spec.num_classes, spec.class_names)


def load_dataset(
    dataset: str, data_file: str | None = None, data_dir: str | None = None
) -> tuple[DatasetSpec | None, ImageData]:
    """Loads --dataset (name or PATH.npz), optionally from --data_file, or TFDS in --data_dir."""
    spec = resolve_dataset(dataset)
    if spec is None:
        if data_file:
            raise DataError(
                f"--data_file={data_file}: cannot be combined with --dataset={dataset}; "
                "give the .npz file once"
            )
        return None, load_npz(dataset, "--dataset")
    if not data_file:
        return spec, load_tfds(spec, data_dir or None)
    data = load_npz(data_file, "--data_file", spec.num_classes, spec.class_names)
    if data.image_shape != spec.image_shape:
        raise DataError(
            f"--data_file={data_file}: images are {_shape_text(data.image_shape)} "
            f"but --dataset={spec.name} needs {_shape_text(spec.image_shape)}"
        )
    return spec, data


# Pool images (no labels) for the data-dependent initialisation of D, and the seed stream they are drawn with.
INIT_SAMPLE_SIZE = 500
INIT_SAMPLE_STREAM = 1_000_003


def initialization_images(images: np.ndarray, seed: int) -> np.ndarray:
    """The 500 pool images (drawn with `seed`, in pool order) that initialise D's weight-normalised layers."""
    sample = np.random.default_rng([seed, INIT_SAMPLE_STREAM]).permutation(len(images))
    return images[np.sort(sample[:INIT_SAMPLE_SIZE])]


def initial_indices(pool_size: int, count: int, seed: int) -> np.ndarray:
    """`count` distinct pool indices drawn uniformly (labels never consulted), sorted int64."""
    if not 1 <= count < pool_size:
        raise DataError(
            f"--initial_labels={count}: must be between 1 and {pool_size - 1} "
            f"(the pool has {pool_size} images)"
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool_size, size=count, replace=False)).astype(np.int64)


def load_initial_indices(path: str, pool_size: int) -> np.ndarray:
    """Reads an .npy of distinct pool indices in [0, pool_size); returns them sorted int64."""
    prefix = f"--initial_indices={path}: "
    indices = _load_numpy(path, prefix, ".npy")
    if not isinstance(indices, np.ndarray):
        indices.close()
        raise DataError(f"{prefix}is an .npz archive; expected an .npy array (np.save)")
    if not np.issubdtype(indices.dtype, np.integer):
        raise DataError(f"{prefix}has dtype {indices.dtype}; indices must be integers")
    if indices.ndim != 1:
        raise DataError(f"{prefix}has shape {indices.shape}; indices must be rank 1")
    if not indices.size:
        raise DataError(f"{prefix}is empty")
    out_of_range = indices[(indices < 0) | (indices >= pool_size)]
    if out_of_range.size:
        raise DataError(f"{prefix}index {out_of_range[0]} is outside the pool [0, {pool_size})")
    indices = np.sort(indices).astype(np.int64)
    duplicates = indices[1:][indices[1:] == indices[:-1]]
    if duplicates.size:
        raise DataError(f"{prefix}index {duplicates[0]} appears more than once")
    if indices.size == pool_size:
        raise DataError(
            f"{prefix}lists all {pool_size} pool images; at least one must stay unlabeled"
        )
    return indices


def to_model_range(images):
    """uint8 images (numpy or tf) -> tf.float32 in [-1, 1], x / 127.5 - 1.

    The one preprocessing step for training, evaluation, scoring and export.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8:
        raise TypeError(f"to_model_range expects uint8 images, got {images.dtype.name}")
    return tf.cast(images, tf.float32) / 127.5 - 1.0

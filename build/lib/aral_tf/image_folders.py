"""The user's own image files as a dataset: an unlabeled pool and a labeled test set in one folder.

    DIR/pool/...             the pool: PNG and JPEG files at any depth, of any size, without labels
    DIR/test/<class name>/   the test set, one subfolder of images per class, or
    DIR/test/labels.csv      the test set as lines `file,label` (a file relative to test/, a class)

A pool image's index is its position among the pool's paths, sorted; hidden files and folders and
files of other extensions are skipped. Every image is resized to size x size (stretched, as the
exported models resize what they are sent) and given `channels` channels: 0 keeps the images' own
count, which must then be the same for all (an alpha channel is dropped), 1 or 3 converts. The class
names are, in index order, `class_names` if given (it may name classes without test images), else the
test subfolders' names or labels.csv's labels, sorted. The pool has no labels (ImageData.y_train is
None): a person labels it through the file oracle. Every problem is a `DataError`, one line naming
the file, folder or flag.
"""

import csv
import io
import os
import re

import numpy as np
import tensorflow as tf

from aral_tf.cli import one_line, read_text
from aral_tf.data import ALIASES, DataError, ImageData, resize_uint8

POOL_DIR = "pool"
TEST_DIR = "test"
TEST_LABELS_FILE = "labels.csv"
TEST_LABELS_HEADER = ("file", "label")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_CHANNEL_KINDS = {1: "grayscale", 2: "grayscale and alpha", 3: "RGB", 4: "RGB and alpha"}
_LAYOUT = (f"it must hold {POOL_DIR}/ (the unlabeled images) and {TEST_DIR}/ (labeled images: one subfolder "
           f"per class, or {TEST_DIR}/{TEST_LABELS_FILE} of file,label lines)")


def is_image_folder(dataset: str) -> bool:
    """True when --dataset names a directory rather than a registered dataset."""
    return dataset not in ALIASES and os.path.isdir(dataset)


def load_image_folder(root: str, size: int, channels: int = 0, class_names=()) -> ImageData:
    """Reads DIR/pool and DIR/test (module docstring) into ImageData with y_train None."""
    for name in (POOL_DIR, TEST_DIR):
        if not os.path.isdir(os.path.join(root, name)):
            raise DataError(f"--dataset={root}: no {name}/ folder; {_LAYOUT}")
    class_names = _checked_class_names(class_names)
    pool_files = _image_files(os.path.join(root, POOL_DIR))
    test_files, test_labels, class_names = _test_set(os.path.join(root, TEST_DIR), class_names)
    reader = _ImageReader(size, channels)
    x_train = reader.read_all(pool_files)
    x_test = reader.read_all(test_files)
    return ImageData(x_train=x_train, y_train=None, x_test=x_test, y_test=np.asarray(test_labels, np.int64),
                     num_classes=len(class_names), class_names=class_names, pool_files=tuple(pool_files))


def _checked_class_names(names):
    names = tuple(name.strip() for name in names)
    if not names:
        return None
    shown = f"--class_names={','.join(names)}"
    if "" in names:
        raise DataError(f"{shown}: a class name is empty")
    lowered = [name.lower() for name in names]
    for position, name in enumerate(lowered):
        if name in lowered[:position]:
            raise DataError(f"{shown}: {names[position]!r} is given twice (names are compared ignoring case)")
    if len(names) < 2:
        raise DataError(f"{shown}: a classifier needs at least 2 classes")
    return names


def _image_files(directory):
    """The image files under `directory` at any depth, sorted by path; DataError if there are none."""
    found, skipped = [], []
    for current, folders, names in os.walk(directory):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        for name in names:
            if not name.startswith("."):
                (found if name.lower().endswith(IMAGE_EXTENSIONS) else skipped).append(os.path.join(current, name))
    if not found:
        other = f" (only {len(skipped)} other files, e.g. {min(skipped)})" if skipped else ""
        raise DataError(f"{directory}: no PNG or JPEG images (.png, .jpg, .jpeg){other}")
    return sorted(found)


def _test_set(test_dir, class_names):
    """(files, labels, class names) of the test set, from test/labels.csv or test/'s class subfolders."""
    csv_path = os.path.join(test_dir, TEST_LABELS_FILE)
    if os.path.exists(csv_path):
        return _test_set_from_csv(csv_path, test_dir, class_names)
    loose = [name for name in sorted(os.listdir(test_dir)) if name.lower().endswith(IMAGE_EXTENSIONS)
             and not name.startswith(".") and os.path.isfile(os.path.join(test_dir, name))]
    if loose:
        raise DataError(f"{os.path.join(test_dir, loose[0])}: an image directly in {TEST_DIR}/; put each test image "
                        f"in its class's subfolder ({TEST_DIR}/<class name>/) or list them in {csv_path}")
    folders = sorted(name for name in os.listdir(test_dir)
                     if not name.startswith(".") and os.path.isdir(os.path.join(test_dir, name)))
    if not folders:
        raise DataError(f"{test_dir}: no class subfolders and no {TEST_LABELS_FILE}; {_LAYOUT}")
    if class_names is None:
        class_names = _found_class_names(folders, test_dir)
    index_of = {name.lower(): index for index, name in enumerate(class_names)}
    files, labels = [], []
    for folder in folders:
        if folder.lower() not in index_of:
            raise DataError(f"{os.path.join(test_dir, folder)}: {folder!r} is not one of the classes given "
                            f"(--class_names={','.join(class_names)})")
        found = _image_files(os.path.join(test_dir, folder))
        files += found
        labels += [index_of[folder.lower()]] * len(found)
    return files, labels, class_names


def _found_class_names(names, where):
    """The distinct `names` (ignoring case; the first spelling kept), sorted; at least 2 of them."""
    first_spelling = {}
    for name in names:
        first_spelling.setdefault(name.lower(), name)
    names = tuple(first_spelling[key] for key in sorted(first_spelling))
    if len(names) < 2:
        raise DataError(f"{where}: only the class {names[0]!r}; a classifier needs at least 2 (add a class, or name "
                        "every class with --class_names)")
    return names


def _test_set_from_csv(path, test_dir, class_names):
    """Files and labels of a test/labels.csv: a header file,label, then one line per image."""
    text = read_text(path, DataError)
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader, None)
        if header is None or tuple(cell.strip().lower() for cell in header) != TEST_LABELS_HEADER:
            found = "nothing" if header is None else ",".join(header)
            raise DataError(f"{path}: line 1: the header must be file,label, found {found!r}")
        rows, first_line = [], {}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            if len(row) != 2:
                raise DataError(f"{path}: line {line}: expected 2 columns (file,label), found {len(row)}")
            name, label = row[0].strip(), row[1].strip()
            file = os.path.join(test_dir, name)
            if name in first_line:
                raise DataError(f"{path}: line {line}: {name} is listed again (first on line {first_line[name]})")
            if not os.path.isfile(file):
                raise DataError(f"{path}: line {line}: no such image {file}")
            first_line[name] = line
            rows.append((line, file, label))
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: {error}") from None
    if not rows:
        raise DataError(f"{path}: lists no images")
    if class_names is None:
        class_names = _found_class_names([label for _, _, label in rows], path)
    labels = [_class_index(label, class_names, f"{path}: line {line}: ") for line, _, label in rows]
    return [file for _, file, _ in rows], labels, class_names


def _class_index(text, class_names, prefix):
    """The index of a class given by name (ignoring case) or by index."""
    lowered = [name.lower() for name in class_names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if text.isdigit() and int(text) < len(class_names):
        return int(text)
    shown = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
    raise DataError(f"{prefix}label {text!r} is not a class name ({shown}) or an index 0..{len(class_names) - 1}")


class _ImageReader:
    """Decodes files to uint8 size x size x channels; without `channels`, every image must have the first one's."""

    def __init__(self, size, channels):
        self._size = size
        self._channels = channels
        self._first = None  # (file, channel count) of the first image read, when channels is 0.

    def read_all(self, files):
        images = None
        for position, file in enumerate(files):
            image = self.read(file)
            if images is None:
                images = np.empty((len(files), *image.shape), np.uint8)
            images[position] = image
        return images

    def read(self, file):
        try:
            with open(file, "rb") as stream:
                contents = stream.read()
            image = tf.io.decode_image(contents, channels=self._channels, expand_animations=False)
        except OSError as error:
            raise DataError(f"{file}: cannot be read ({error.strerror or error})") from None
        except tf.errors.OpError as error:
            raise DataError(f"{file}: not a readable PNG or JPEG image ({_op_reason(error)})") from None
        if not self._channels:
            image = self._same_channels(file, image)
        if tuple(image.shape[:2]) != (self._size, self._size):
            image = resize_uint8(image, self._size, self._size)
        return image.numpy()

    def _same_channels(self, file, image):
        """`image` without its alpha channel; DataError if it has other colour channels than the first image."""
        found = image.shape[-1]
        if self._first is None:
            self._first = file, found
        first_file, first = self._first
        if _colour_channels(found) != _colour_channels(first):
            raise DataError(f"{file}: is {_CHANNEL_KINDS[found]} but {first_file} is {_CHANNEL_KINDS[first]}; "
                            "images of a dataset need the same channels: give --channels=1 or --channels=3 to "
                            "convert every image")
        return image[..., :_colour_channels(found)]


def _op_reason(error):
    """TensorFlow's reason for a failed op, without the names of its function and op."""
    return one_line(re.sub(r"\{\{function_node [^}]*\}\}|\[Op:\w+\]", "", error.message), limit=200)


def _colour_channels(count):
    """Channels without alpha: 1 for grayscale (and alpha), 3 for RGB (and alpha)."""
    return 1 if count <= 2 else 3

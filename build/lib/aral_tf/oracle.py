"""Oracles answer the loop's queries with labels: the simulated one from the ground truth, the file one
through a person.

`FileOracle` writes each round's queries to `DIRECTORY/ROUND/` (ROUND is `initial` for the initial
labeled set, `cycle_K` for the images selected after cycle K): one PNG per image and `queries.csv`
(columns `pool_index,file`; for a pool read from image files also `source`, the image's own file).
The person writes `labels.csv` beside it (columns `pool_index,label`, a label being a class index or,
where the dataset has them, a class name). Until that file exists the oracle raises `AwaitingLabels`;
once it exists it is validated as a whole before any label is used.
"""

import csv
import io
import os

import numpy as np
import tensorflow as tf

from aral_tf.cli import read_text
from aral_tf.run_state import write_atomic

QUERIES_FILE = "queries.csv"
LABELS_FILE = "labels.csv"
LABELS_HEADER = ("pool_index", "label")
_LISTED = 5
# Bounds of a labels.csv: its size (a header, blank lines and comfortable lines for every queried
# image) and the length of one field (an index or a class name).
MAX_LABELS_BYTES = 64 * 1024
MAX_LABELS_BYTES_PER_QUERY = 1024
MAX_FIELD_CHARACTERS = 256


class AwaitingLabels(Exception):
    """Queries were written for a person to label; str(e) says where and what to do."""


class LabelsFileError(ValueError):
    """A labels.csv that cannot be used; str(e) is one line naming the file and line."""


class SimulatedOracle:
    """Answers queries with the ground truth; the pool's labels are read nowhere else."""

    def __init__(self, labels):
        self._labels = np.asarray(labels, dtype=np.int64)
        self.queried = 0

    def label(self, indices, round_name=None):  # pylint: disable=unused-argument
        """True labels of the pool indices `indices`."""
        self.queried += len(indices)
        return self._labels[np.asarray(indices, dtype=np.int64)]


class FileOracle:
    """Asks a person: queries as PNG files and queries.csv, answers read from labels.csv."""

    def __init__(self, images, directory, num_classes, class_names=None, sources=None):
        self._images = images
        self._sources = sources
        self._columns = ("pool_index", "file") + (("source",) if sources else ())
        self.directory = directory
        self._num_classes = num_classes
        self._class_names = class_names

    def label(self, indices, round_name):
        """Labels of `indices` from ROUND/labels.csv; writes the queries and raises AwaitingLabels if absent."""
        indices = np.asarray(indices, dtype=np.int64)
        round_dir = os.path.join(self.directory, round_name)
        labels_path = os.path.join(round_dir, LABELS_FILE)
        if os.path.exists(labels_path):
            return read_labels(labels_path, indices, self._num_classes, self._class_names)
        self._write_queries(round_dir, indices)
        raise AwaitingLabels(
            f"{len(indices)} images to label in {round_dir} ({QUERIES_FILE} lists {','.join(self._columns)}): "
            f"write {labels_path} with the header line pool_index,label and one line per image (label: "
            f"{_label_hint(self._num_classes, self._class_names)}), then run the same command again")

    def _write_queries(self, round_dir, indices):
        rows = io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        writer.writerow(self._columns)
        for index in indices:
            name = f"{index}.png"
            write_atomic(os.path.join(round_dir, name), tf.io.encode_png(self._images[index]).numpy())
            writer.writerow((int(index), name) + ((self._sources[index],) if self._sources else ()))
        write_atomic(os.path.join(round_dir, QUERIES_FILE), rows.getvalue().encode())


def _label_hint(num_classes, class_names):
    hint = f"a class index 0..{num_classes - 1}"
    if class_names and list(class_names) != [str(index) for index in range(num_classes)]:
        shown = ", ".join(class_names[:_LISTED]) + (", ..." if len(class_names) > _LISTED else "")
        hint += f" or a class name ({shown})"
    return hint


def _parse_label(text, num_classes, class_names):
    """A class index from `text` (an index or a class name, case-insensitive), or None."""
    if class_names:
        names = [name.lower() for name in class_names]
        if text.lower() in names:
            return names.index(text.lower())
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value < num_classes else None


def _rows(reader, path):
    """(line number, row) of a csv reader; a malformed row or an overlong field is a LabelsFileError."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise LabelsFileError(f"{path}: line {reader.line_num}: {error}") from None
        longest = max((len(cell) for cell in row), default=0)
        if longest > MAX_FIELD_CHARACTERS:
            raise LabelsFileError(f"{path}: line {reader.line_num}: a field of {longest:,} characters (at most "
                                  f"{MAX_FIELD_CHARACTERS})")
        yield reader.line_num, row


def read_labels(path, indices, num_classes, class_names=None):
    """Labels of `indices` (aligned with them) from a labels.csv; LabelsFileError at the first problem.

    Every queried index must be labeled exactly once with a valid label; no other index may appear.
    Blank lines are ignored; a UTF-8 byte order mark is accepted. The file may hold at most
    MAX_LABELS_BYTES + MAX_LABELS_BYTES_PER_QUERY per queried index, a field MAX_FIELD_CHARACTERS.
    """
    indices = np.asarray(indices, dtype=np.int64)
    position_of = {int(index): position for position, index in enumerate(indices)}
    limit = MAX_LABELS_BYTES + MAX_LABELS_BYTES_PER_QUERY * len(indices)
    text = read_text(path, LabelsFileError, max_bytes=limit,
                     limit_reason=f"the {limit:,} a labels file of {len(indices)} queries may have")
    rows = _rows(csv.reader(io.StringIO(text)), path)
    _, header = next(rows, (1, None))
    if header is None or tuple(cell.strip().lower() for cell in header) != LABELS_HEADER:
        found = "nothing" if header is None else ",".join(header)
        raise LabelsFileError(f"{path}: line 1: the header must be pool_index,label, found {found!r}")
    labels = np.full(len(indices), -1, dtype=np.int64)
    first_line = {}
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise LabelsFileError(f"{path}: line {line}: expected 2 columns (pool_index,label), found {len(row)}")
        index_text, label_text = row[0].strip(), row[1].strip()
        try:
            index = int(index_text)
        except ValueError:
            raise LabelsFileError(f"{path}: line {line}: pool_index {index_text!r} is not an integer") from None
        if index not in position_of:
            raise LabelsFileError(f"{path}: line {line}: pool index {index} was not queried in this round")
        if index in first_line:
            raise LabelsFileError(f"{path}: line {line}: pool index {index} is labeled again "
                                  f"(first on line {first_line[index]})")
        label = _parse_label(label_text, num_classes, class_names)
        if label is None:
            raise LabelsFileError(f"{path}: line {line}: label {label_text!r} of pool index {index} is not "
                                  f"{_label_hint(num_classes, class_names)}")
        first_line[index] = line
        labels[position_of[index]] = label
    missing = indices[labels < 0]
    if missing.size:
        listed = ", ".join(str(index) for index in missing[:_LISTED]) + (", ..." if missing.size > _LISTED else "")
        raise LabelsFileError(f"{path}: {missing.size} of the {len(indices)} queried pool indices have no label "
                              f"({listed})")
    return labels

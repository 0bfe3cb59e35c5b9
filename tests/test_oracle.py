"""Oracles: the simulated one, and the file oracle's queries and labels.csv validation."""

import csv
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from aral_tf import oracle
from tests.helpers import tiny_images

CIFAR_LIKE = ("airplane", "automobile", "bird")


@pytest.fixture(name="workdir")
def fixture_workdir():
    with tempfile.TemporaryDirectory() as directory:
        yield directory


def write(path, text, encoding="utf-8"):
    with open(path, "w", encoding=encoding, newline="") as stream:
        stream.write(text)
    return path


def test_simulated_oracle_answers_with_the_ground_truth():
    simulated = oracle.SimulatedOracle(np.array([4, 5, 6, 7]))
    np.testing.assert_array_equal(simulated.label(np.array([3, 0]), "initial"), [7, 4])
    assert simulated.queried == 2


def test_file_oracle_writes_queries_then_reads_the_answers(workdir):
    images = tiny_images(10, image_shape=(8, 8, 3))
    files = oracle.FileOracle(images, workdir, 3, CIFAR_LIKE)
    with pytest.raises(oracle.AwaitingLabels, match=r"2 images to label in .*cycle_4.*airplane, automobile, bird"):
        files.label(np.array([7, 2]), "cycle_4")
    round_dir = os.path.join(workdir, "cycle_4")
    with open(os.path.join(round_dir, "queries.csv"), encoding="utf-8") as stream:
        assert list(csv.reader(stream)) == [["pool_index", "file"], ["7", "7.png"], ["2", "2.png"]]
    with open(os.path.join(round_dir, "7.png"), "rb") as stream:
        np.testing.assert_array_equal(tf.io.decode_png(stream.read()).numpy(), images[7])
    write(os.path.join(round_dir, "labels.csv"), "pool_index,label\n2, Bird\n\n7,0\n")
    np.testing.assert_array_equal(files.label(np.array([7, 2]), "cycle_4"), [0, 2])


def test_labels_file_with_byte_order_mark_and_crlf(workdir):
    path = write(os.path.join(workdir, "labels.csv"), "\ufeffPool_Index,Label\r\n5,1\r\n3,2\r\n")
    np.testing.assert_array_equal(oracle.read_labels(path, np.array([3, 5]), 3), [2, 1])


def test_digit_class_names_need_no_hint():
    digits = tuple(str(digit) for digit in range(10))
    assert oracle._label_hint(10, digits) == "a class index 0..9"  # pylint: disable=protected-access


BAD_LABELS = [
    ("", "line 1: the header must be pool_index,label, found 'nothing'"),
    ("3,1\n5,2\n", "line 1: the header must be pool_index,label, found '3,1'"),
    ("index,label\n3,1\n5,2\n", "line 1: the header"),
    ("pool_index,label\n3,1,x\n5,2\n", "line 2: expected 2 columns (pool_index,label), found 3"),
    ("pool_index,label\nthree,1\n5,2\n", "line 2: pool_index 'three' is not an integer"),
    ("pool_index,label\n3,1\n5,2\n8,0\n", "line 4: pool index 8 was not queried in this round"),
    ("pool_index,label\n3,1\n\n3,2\n", "line 4: pool index 3 is labeled again (first on line 2)"),
    ("pool_index,label\n3,3\n5,2\n",
     "line 2: label '3' of pool index 3 is not a class index 0..2 or a class name"),
    ("pool_index,label\n3,-1\n5,2\n", "line 2: label '-1'"),
    ("pool_index,label\n3,boat\n5,2\n", "line 2: label 'boat'"),
    ("pool_index,label\n3,\n5,2\n", "line 2: label ''"),
    ("pool_index,label\n5,2\n", "1 of the 2 queried pool indices have no label (3)"),
]


@pytest.mark.parametrize("text, message", BAD_LABELS)
def test_bad_labels_file_names_file_and_line(workdir, text, message):
    path = write(os.path.join(workdir, "labels.csv"), text)
    with pytest.raises(oracle.LabelsFileError) as caught:
        oracle.read_labels(path, np.array([3, 5]), 3, CIFAR_LIKE)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_labels_file_that_is_not_utf8(workdir):
    path = os.path.join(workdir, "labels.csv")
    with open(path, "wb") as stream:
        stream.write(b"pool_index,label\n3,\xff\xfe\n")
    with pytest.raises(oracle.LabelsFileError, match="labels.csv: not UTF-8 text"):
        oracle.read_labels(path, np.array([3]), 3)

"""A folder of the user's own images (aral_tf/image_folders.py): loading, resizing, the two test-set
layouts, bad files as one-line errors naming the file, and two rounds of --oracle=files through main."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from aral_tf.data import DataError
from aral_tf.image_folders import is_image_folder, load_image_folder

TINY_RUN = ["--image_size=8", "--train_steps=5", "--batch_size=4", "--eval_batch_size=50", "--initial_labels=4",
            "--budget=2", "--cycles=1", "--width=0.02", "--latent_dim=4", "--noprogress", "--noexport"]


def write_image(path, height, width, channels=3, seed=0):
    """A random image file: JPEG for .jpg/.jpeg paths, else PNG; returns its pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    encode = tf.io.encode_jpeg if path.endswith((".jpg", ".jpeg")) else tf.io.encode_png
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(encode(pixels).numpy())
    return pixels


@pytest.fixture(name="folder")
def fixture_folder(tmp_path):
    """pool/ of 12 images of several sizes (PNG and JPEG, one in a subfolder); test/ with cat and dog."""
    root = str(tmp_path / "photos")
    for index in range(10):
        write_image(os.path.join(root, "pool", f"{index:02d}.png"), 8 + index, 20 - index, seed=index)
    write_image(os.path.join(root, "pool", "more", "a.jpg"), 30, 40, seed=10)
    write_image(os.path.join(root, "pool", "b.JPEG"), 8, 8, seed=11)
    for index in range(3):
        write_image(os.path.join(root, "test", "dog", f"{index}.png"), 12, 12, seed=20 + index)
        write_image(os.path.join(root, "test", "cat", f"{index}.jpg"), 9, 16, seed=30 + index)
    return root


def _error(root, **options):
    with pytest.raises(DataError) as error:
        load_image_folder(root, 8, **options)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_pool_is_every_image_in_sorted_order_resized_and_unlabeled(folder):
    data = load_image_folder(folder, 8)
    pool = os.path.join(folder, "pool")
    assert data.pool_files == (*(os.path.join(pool, f"{index:02d}.png") for index in range(10)),
                               os.path.join(pool, "b.JPEG"), os.path.join(pool, "more", "a.jpg"))
    assert data.x_train.shape == (12, 8, 8, 3) and data.x_train.dtype == np.uint8 and data.y_train is None
    assert data.x_test.shape == (6, 8, 8, 3) and data.image_shape == (8, 8, 3)
    assert data.class_names == ("cat", "dog") and data.num_classes == 2
    assert data.y_test.tolist() == [0, 0, 0, 1, 1, 1]
    assert is_image_folder(folder) and not is_image_folder(os.path.join(folder, "nothing"))


def test_an_image_of_the_chosen_size_is_kept_as_it_is(folder):
    pixels = write_image(os.path.join(folder, "pool", "00.png"), 8, 8, seed=5)
    np.testing.assert_array_equal(load_image_folder(folder, 8).x_train[0], pixels)
    assert load_image_folder(folder, 20).x_train.shape == (12, 20, 20, 3)


def test_class_names_flag_sets_the_order_and_may_name_classes_without_test_images(folder):
    data = load_image_folder(folder, 8, class_names=("Dog", "bird", "cat"))
    assert data.class_names == ("Dog", "bird", "cat") and data.num_classes == 3
    assert data.y_test.tolist() == [2, 2, 2, 0, 0, 0]


def test_test_set_from_labels_csv(folder):
    test_dir = os.path.join(folder, "test")
    with open(os.path.join(test_dir, "labels.csv"), "w", encoding="utf-8") as stream:
        stream.write("file,label\ndog/0.png,dog\ncat/1.jpg,cat\n\ndog/2.png,Dog\n")
    data = load_image_folder(folder, 8)
    assert data.class_names == ("cat", "dog") and data.y_test.tolist() == [1, 0, 1]
    data = load_image_folder(folder, 8, class_names=("dog", "cat", "fish"))
    assert data.y_test.tolist() == [0, 1, 0]
    with open(os.path.join(test_dir, "labels.csv"), "w", encoding="utf-8") as stream:
        stream.write("file,label\ndog/0.png,2\ncat/1.jpg,0\n")
    assert load_image_folder(folder, 8, class_names=("a", "b", "c")).y_test.tolist() == [2, 0]


def test_channels_are_converted_on_request_and_alpha_is_dropped(folder):
    write_image(os.path.join(folder, "pool", "gray.png"), 8, 8, channels=1)
    rgba = write_image(os.path.join(folder, "pool", "rgba.png"), 8, 8, channels=4)
    assert load_image_folder(folder, 8, channels=1).image_shape == (8, 8, 1)
    assert load_image_folder(folder, 8, channels=3).image_shape == (8, 8, 3)
    os.remove(os.path.join(folder, "pool", "gray.png"))
    data = load_image_folder(folder, 8)
    np.testing.assert_array_equal(data.x_train[data.pool_files.index(os.path.join(folder, "pool", "rgba.png"))],
                                  rgba[..., :3])


def test_mixed_channels_name_both_files(folder):
    gray = os.path.join(folder, "test", "cat", "gray.png")
    write_image(gray, 8, 8, channels=1)
    assert _error(folder) == (f"{gray}: is grayscale but {os.path.join(folder, 'pool', '00.png')} is RGB; images "
                              "of a dataset need the same channels: give --channels=1 or --channels=3 to convert "
                              "every image")


def test_an_unreadable_image_is_named(folder):
    broken = os.path.join(folder, "pool", "more", "broken.png")
    with open(broken, "wb") as stream:
        stream.write(b"not an image")
    assert _error(folder).startswith(f"{broken}: not a readable PNG or JPEG image (")
    truncated = os.path.join(folder, "pool", "more", "broken.png")
    with open(os.path.join(folder, "pool", "00.png"), "rb") as stream:
        payload = stream.read()
    with open(truncated, "wb") as stream:
        stream.write(payload[:len(payload) // 2])
    assert _error(folder).startswith(f"{truncated}: not a readable PNG or JPEG image (")


def test_empty_folders_are_named(folder, tmp_path):
    empty_class = os.path.join(folder, "test", "fish")
    os.makedirs(empty_class)
    assert _error(folder) == f"{empty_class}: no PNG or JPEG images (.png, .jpg, .jpeg)"
    empty_pool = str(tmp_path / "empty")
    os.makedirs(os.path.join(empty_pool, "pool"))
    os.makedirs(os.path.join(empty_pool, "test"))
    with open(os.path.join(empty_pool, "pool", "notes.txt"), "w", encoding="utf-8") as stream:
        stream.write("x")
    assert _error(empty_pool) == (f"{os.path.join(empty_pool, 'pool')}: no PNG or JPEG images (.png, .jpg, .jpeg) "
                                  f"(only 1 other files, e.g. {os.path.join(empty_pool, 'pool', 'notes.txt')})")
    os.rmdir(os.path.join(empty_pool, "test"))
    assert _error(empty_pool).startswith(f"--dataset={empty_pool}: no test/ folder; it must hold pool/")


def test_bad_test_layouts_and_class_names(folder):
    test_dir = os.path.join(folder, "test")
    assert _error(folder, class_names=("dog", "bird")) == (
        f"{os.path.join(test_dir, 'cat')}: 'cat' is not one of the classes given (--class_names=dog,bird)")
    assert _error(folder, class_names=("dog", "DOG")) == (
        "--class_names=dog,DOG: 'DOG' is given twice (names are compared ignoring case)")
    assert _error(folder, class_names=("dog",)) == "--class_names=dog: a classifier needs at least 2 classes"
    loose = os.path.join(test_dir, "loose.png")
    write_image(loose, 8, 8)
    assert _error(folder).startswith(f"{loose}: an image directly in test/; put each test image in its class's")
    labels = os.path.join(test_dir, "labels.csv")
    for text, expected in (
            ("file,label\ndog/0.png,dog\ndog/9.png,cat\n", f"line 3: no such image {test_dir}/dog/9.png"),
            ("file,label\ndog/0.png,dog\ndog/0.png,cat\n", "line 3: dog/0.png is listed again (first on line 2)"),
            ("file,class\n", "line 1: the header must be file,label, found 'file,class'"),
            ("file,label\n", "lists no images"),
            ("file,label\ndog/0.png,dog\n",
             "only the class 'dog'; a classifier needs at least 2 (add a class, or name every class with "
             "--class_names)"),
            ("file,label\ndog/0.png,dog,3\n", "line 2: expected 2 columns (file,label), found 3")):
        with open(labels, "w", encoding="utf-8") as stream:
            stream.write(text)
        assert _error(folder) == f"{labels}: {expected}"
    with open(labels, "w", encoding="utf-8") as stream:
        stream.write("file,label\ndog/0.png,dog\ncat/0.jpg,horse\n")
    assert _error(folder, class_names=("cat", "dog")) == (
        f"{labels}: line 3: label 'horse' is not a class name (cat, dog) or an index 0..1")


def _write_labels(round_dir, true_class):
    """labels.csv for a round's queries.csv, by class name: true_class(source file)."""
    with open(os.path.join(round_dir, "queries.csv"), encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    with open(os.path.join(round_dir, "labels.csv"), "w", encoding="utf-8") as stream:
        stream.write("pool_index,label\n" + "".join(f"{row['pool_index']},{true_class(row['source'])}\n"
                                                    for row in rows))
    return rows


@pytest.mark.usefixtures("fresh_flags")
def test_two_rounds_of_files_oracle_on_an_unlabeled_folder(folder, tmp_path, capsys):
    import main  # pylint: disable=import-outside-toplevel

    output_dir = str(tmp_path / "run")
    arguments = ["main.py", f"--dataset={folder}", f"--output_dir={output_dir}", *TINY_RUN]
    with pytest.raises(SystemExit) as exit_info:
        main.main(main.parse_flags(arguments))
    assert exit_info.value.code == 2 and not os.path.exists(output_dir)
    assert capsys.readouterr().err == (f"error: --oracle=simulated: the pool of --dataset={folder} has no labels to "
                                       "simulate; label it yourself with --oracle=files\n")

    def true_class(source):
        return "cat" if os.path.basename(source) < "05" else "dog"

    arguments.append("--oracle=files")
    rounds = {}
    for round_name in ("initial", "cycle_0"):
        main.main(main.parse_flags(arguments))
        round_dir = os.path.join(output_dir, "queries", round_name)
        assert "Waiting for labels: " in capsys.readouterr().out
        rows = _write_labels(round_dir, true_class)
        assert all(row["source"].startswith(os.path.join(folder, "pool")) for row in rows)
        rounds[round_name] = {int(row["pool_index"]): row["source"] for row in rows}
    main.main(main.parse_flags(arguments))
    assert "test accuracy" in capsys.readouterr().out
    with open(os.path.join(output_dir, "results.jsonl"), encoding="utf-8") as stream:
        assert [json.loads(line)["num_labeled"] for line in stream] == [4, 6]
    data = load_image_folder(folder, 8)
    labeled = np.load(os.path.join(output_dir, "cycle_1", "labeled.npy"), allow_pickle=False)
    labels = np.load(os.path.join(output_dir, "cycle_1", "labels.npy"), allow_pickle=False)
    assert sorted(labeled.tolist()) == sorted([*rounds["initial"], *rounds["cycle_0"]])
    assert labels.tolist() == [data.class_names.index(true_class(data.pool_files[index])) for index in labeled]
    assert os.path.isfile(os.path.join(output_dir, "model.keras"))


@pytest.mark.usefixtures("fresh_flags")
def test_folder_flags_are_refused_with_another_dataset(capsys):
    import main  # pylint: disable=import-outside-toplevel

    with pytest.raises(SystemExit) as exit_info:
        main.main(main.parse_flags(["main.py", "--dataset=mnist", "--image_size=16"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("error: --image_size: only with --dataset=DIR, a folder of images "
                                       "(not --dataset=mnist)\n")

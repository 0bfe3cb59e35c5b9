"""Tests for aral_tf.data: npz validation, TFDS loading, initial labels, preprocessing."""

import inspect
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from aral_tf import data


def _arrays(num_train=6, num_test=4, shape=(8, 8, 1), num_classes=3):
    """A tiny valid dataset as a dict of the four npz arrays."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (num_train, *shape), dtype=np.uint8),
        "y_train": np.arange(num_train, dtype=np.int32) % num_classes,
        "x_test": rng.integers(0, 256, (num_test, *shape), dtype=np.uint8),
        "y_test": np.arange(num_test, dtype=np.int64) % num_classes,
    }


def _write_npz(tmp_path, name="d.npz", **arrays):
    path = str(tmp_path / name)
    np.savez(path, **arrays)
    return path


def _message(error_info):
    return str(error_info.value)


class TestLoadNpz:
    def test_round_trip(self, tmp_path):
        arrays = _arrays()
        path = _write_npz(tmp_path, **arrays, extra=np.zeros(3))
        loaded = data.load_npz(path)
        for key in data.NPZ_ARRAYS:
            np.testing.assert_array_equal(getattr(loaded, key), arrays[key])
        assert loaded.y_train.dtype == np.int64 and loaded.y_test.dtype == np.int64
        assert loaded.x_train.dtype == np.uint8
        assert loaded.num_classes == 3
        assert loaded.class_names is None
        assert loaded.image_shape == (8, 8, 1)
        assert loaded.pool_size == 6

    def test_explicit_classes(self, tmp_path):
        path = _write_npz(tmp_path, **_arrays(shape=(4, 4, 3)))
        loaded = data.load_npz(path, num_classes=5, class_names=["a", "b", "c", "d", "e"])
        assert loaded.num_classes == 5
        assert loaded.class_names == ("a", "b", "c", "d", "e")
        assert loaded.image_shape == (4, 4, 3)

    @pytest.mark.parametrize(
        "overrides, culprit",
        [
            ({"y_test": None}, "missing array y_test"),
            ({"x_train": np.zeros((6, 8, 8, 1), np.float32)}, "x_train has dtype float32"),
            ({"x_test": np.zeros((4, 8, 8), np.uint8)}, "x_test has shape (4, 8, 8)"),
            ({"y_train": np.zeros(6, np.float64)}, "y_train has dtype float64"),
            ({"y_train": np.zeros(6, bool)}, "y_train has dtype bool"),
            ({"y_test": np.zeros((4, 1), np.int64)}, "y_test has shape (4, 1)"),
            ({"y_train": np.arange(5)}, "x_train has 6 images but y_train has 5 labels"),
            ({"x_test": np.zeros((0, 8, 8, 1), np.uint8), "y_test": np.zeros(0, np.int64)},
             "x_test is empty"),
            ({"x_train": np.zeros((0, 8, 8, 1), np.uint8), "y_train": np.zeros(0, np.int64)},
             "x_train is empty"),
            ({"x_test": np.zeros((4, 9, 8, 1), np.uint8)},
             "x_train images are 8x8x1 but x_test images are 9x8x1"),
            ({"x_train": np.zeros((6, 8, 8, 2), np.uint8),
              "x_test": np.zeros((4, 8, 8, 2), np.uint8)}, "images have 2 channels"),
            ({"y_test": np.array([0, 1, -7, 2])}, "y_test contains label -7"),
            ({"y_train": np.zeros(6, np.int64), "y_test": np.zeros(4, np.int64)},
             "all labels are 0"),
        ],
    )
    def test_invalid_arrays(self, tmp_path, overrides, culprit):
        arrays = {**_arrays(), **overrides}
        present = {key: value for key, value in arrays.items() if value is not None}
        path = _write_npz(tmp_path, **present)
        with pytest.raises(data.DataError) as error:
            data.load_npz(path)
        assert _message(error).startswith(f"--data_file={path}: ")
        assert culprit in _message(error)
        assert "\n" not in _message(error)

    def test_unused_classes_up_to_the_margin(self, tmp_path):
        arrays = _arrays()
        arrays["y_train"][2] = 3 + data.MAX_UNUSED_CLASSES  # 0, 1, 2 and this one: classes 3 .. 102 unused
        assert data.load_npz(_write_npz(tmp_path, **arrays)).num_classes == 4 + data.MAX_UNUSED_CLASSES
        arrays["y_train"][2] += 1
        with pytest.raises(data.DataError, match=r"the largest label is 104 but only 4 distinct labels appear"):
            data.load_npz(_write_npz(tmp_path, **arrays))
        assert data.load_npz(_write_npz(tmp_path, **arrays), num_classes=200).num_classes == 200

    def test_image_side_bound(self, tmp_path):
        path = _write_npz(tmp_path, **_arrays(shape=(4, data.MAX_IMAGE_SIDE + 1, 1)))
        with pytest.raises(data.DataError, match=r"images are 4x1025x1; their sides may be at most 1024 pixels"):
            data.load_npz(path)

    def test_arrays_too_large_for_memory_are_refused_before_reading(self, tmp_path, monkeypatch):
        path = _write_npz(tmp_path, **_arrays())
        monkeypatch.setattr(data.resources, "available_memory", lambda: 100)
        with pytest.raises(data.DataError, match=r"its arrays need 696 bytes of memory, 100 bytes is available"):
            data.load_npz(path)

    def test_label_above_num_classes(self, tmp_path):
        arrays = _arrays()
        arrays["y_train"][2] = 10
        path = _write_npz(tmp_path, **arrays)
        expected = r"y_train contains label 10, outside \[0, 10\)"
        with pytest.raises(data.DataError, match=expected) as error:
            data.load_npz(path, "--dataset", num_classes=10)
        assert _message(error).startswith(f"--dataset={path}: ")

    def test_missing_file(self, tmp_path):
        path = str(tmp_path / "absent.npz")
        with pytest.raises(data.DataError) as error:
            data.load_npz(path)
        assert _message(error) == f"--data_file={path}: no such file"

    @pytest.mark.parametrize(
        "write, culprit",
        [
            (lambda path: open(path, "w").write("not numpy\n"), "not an .npz file (it starts with b'not "),
            (lambda path: open(path, "wb").close(), "not an .npz file (it starts with b''"),
            (lambda path: np.save(open(path, "wb"), np.zeros(3)), "holds a single array"),
            (lambda path: os.mkdir(path), "not a readable .npz file"),
        ],
    )
    def test_unreadable_file(self, tmp_path, write, culprit):
        path = str(tmp_path / "bad.npz")
        write(path)
        with pytest.raises(data.DataError) as error:
            data.load_npz(path)
        assert _message(error).startswith(f"--data_file={path}: {culprit}")
        assert "\n" not in _message(error)

    def test_truncated_archive(self, tmp_path):
        path = _write_npz(tmp_path, **_arrays())
        with open(path, "rb") as file:
            content = file.read()
        with open(path, "wb") as file:
            file.write(content[: len(content) // 2])
        with pytest.raises(data.DataError) as error:
            data.load_npz(path)
        assert _message(error).startswith(f"--data_file={path}: ")

    def test_object_array_needs_pickle(self, tmp_path):
        arrays = _arrays()
        arrays["y_train"] = np.array([0, 1, 2, 0, 1, None], dtype=object)
        path = _write_npz(tmp_path, **arrays)
        with pytest.raises(data.DataError) as error:
            data.load_npz(path)
        assert _message(error).startswith(f"--data_file={path}: cannot read arrays")
        assert "pickle" in _message(error)


class TestRegistry:
    @pytest.mark.parametrize(
        "alias, canonical",
        [
            ("mnist", "mnist"), ("svhn", "svhn"), ("svhn_cropped", "svhn"),
            ("cifar10", "cifar10"), ("celeba", "celeba"), ("celeb_a", "celeba"),
            ("imagenet", "imagenet"), ("imagenet2012", "imagenet"),
        ],
    )
    def test_aliases(self, alias, canonical):
        assert data.ALIASES[alias] == canonical
        assert data.resolve_dataset(alias) is data.DATASETS[canonical]

    def test_npz_path_is_not_a_registered_dataset(self):
        assert data.resolve_dataset("/some/where/mine.npz") is None

    def test_unknown_name(self):
        with pytest.raises(data.DataError) as error:
            data.resolve_dataset("fashion")
        assert _message(error) == (
            "--dataset=fashion: unknown dataset; choose one of mnist, svhn, cifar10, "
            "celeba, imagenet, a path to an .npz file, or a folder of images (pool/ and test/)"
        )

    def test_specs(self):
        expected = {
            "mnist": ("mnist", (28, 28, 1), 10, "test"),
            "svhn": ("svhn_cropped", (32, 32, 3), 10, "test"),
            "cifar10": ("cifar10", (32, 32, 3), 10, "test"),
            "celeba": ("celeb_a", (64, 64, 3), 2, "test"),
            "imagenet": ("imagenet2012", (224, 224, 3), 1000, "validation"),
        }
        for name, (tfds_name, shape, num_classes, test_split) in expected.items():
            spec = data.DATASETS[name]
            assert (spec.name, spec.tfds_name, spec.image_shape) == (name, tfds_name, shape)
            assert (spec.num_classes, spec.train_split) == (num_classes, "train")
            assert spec.test_split == test_split
            if spec.class_names is not None:
                assert len(spec.class_names) == num_classes
        assert data.DATASETS["celeba"].class_names == ("female", "male")
        assert data.DATASETS["imagenet"].class_names is None


class TestLoadDataset:
    def test_registered_name_with_data_file(self, tmp_path):
        path = _write_npz(tmp_path, **_arrays(shape=(28, 28, 1)))
        spec, loaded = data.load_dataset("mnist", data_file=path)
        assert spec is data.DATASETS["mnist"]
        assert loaded.num_classes == 10
        assert loaded.class_names == tuple("0123456789")

    def test_shape_mismatch(self, tmp_path):
        path = _write_npz(tmp_path, **_arrays(shape=(32, 32, 3)))
        with pytest.raises(data.DataError) as error:
            data.load_dataset("mnist", data_file=path)
        assert _message(error) == (
            f"--data_file={path}: images are 32x32x3 but --dataset=mnist needs 28x28x1"
        )

    def test_npz_as_dataset(self, tmp_path):
        path = _write_npz(tmp_path, **_arrays())
        spec, loaded = data.load_dataset(path)
        assert spec is None
        assert loaded.num_classes == 3

    def test_npz_errors_name_dataset_flag(self, tmp_path):
        path = str(tmp_path / "absent.npz")
        with pytest.raises(data.DataError, match=r"^--dataset=.*absent\.npz: no such file$"):
            data.load_dataset(path)

    def test_npz_dataset_with_data_file(self, tmp_path):
        path = _write_npz(tmp_path, **_arrays())
        with pytest.raises(data.DataError, match=r"^--data_file=other\.npz: cannot be combined"):
            data.load_dataset(path, data_file="other.npz")


class TestInitialIndices:
    def test_deterministic_distinct_sorted(self):
        first = data.initial_indices(1000, 50, seed=3)
        np.testing.assert_array_equal(first, data.initial_indices(1000, 50, seed=3))
        assert not np.array_equal(first, data.initial_indices(1000, 50, seed=4))
        assert first.dtype == np.int64 and first.shape == (50,)
        assert len(np.unique(first)) == 50
        assert np.all(np.diff(first) > 0)
        assert first.min() >= 0 and first.max() < 1000

    def test_does_not_see_labels(self):
        parameters = list(inspect.signature(data.initial_indices).parameters)
        assert parameters == ["pool_size", "count", "seed"]

    def test_extremes(self):
        assert data.initial_indices(5, 4, seed=0).size == 4
        assert data.initial_indices(5, 1, seed=0).size == 1

    @pytest.mark.parametrize("count", [0, -1, 10, 11])
    def test_bad_count(self, count):
        expected = rf"^--initial_labels={count}: must be between 1 and 9 "
        with pytest.raises(data.DataError, match=expected):
            data.initial_indices(10, count, seed=0)


class TestLoadInitialIndices:
    def test_good(self, tmp_path):
        path = str(tmp_path / "idx.npy")
        np.save(path, np.array([7, 2, 5], np.int32))
        indices = data.load_initial_indices(path, pool_size=10)
        np.testing.assert_array_equal(indices, [2, 5, 7])
        assert indices.dtype == np.int64

    @pytest.mark.parametrize(
        "content, culprit",
        [
            (np.array([1.0, 2.0]), "has dtype float64"),
            (np.array([True, False]), "has dtype bool"),
            (np.array([[1, 2]]), "has shape (1, 2)"),
            (np.array([], np.int64), "is empty"),
            (np.array([3, -1]), "index -1 is outside the pool [0, 10)"),
            (np.array([3, 10]), "index 10 is outside the pool [0, 10)"),
            (np.array([4, 3, 4]), "index 4 appears more than once"),
            (np.arange(10), "lists all 10 pool images"),
            (np.array(["1", "2"]), "has dtype <U1"),
        ],
    )
    def test_bad_content(self, tmp_path, content, culprit):
        path = str(tmp_path / "idx.npy")
        np.save(path, content)
        with pytest.raises(data.DataError) as error:
            data.load_initial_indices(path, pool_size=10)
        assert _message(error).startswith(f"--initial_indices={path}: ")
        assert culprit in _message(error)

    def test_missing_file(self, tmp_path):
        path = str(tmp_path / "absent.npy")
        with pytest.raises(data.DataError, match=r": no such file$"):
            data.load_initial_indices(path, pool_size=10)

    def test_not_npy(self, tmp_path):
        path = str(tmp_path / "idx.npy")
        with open(path, "w") as file:
            file.write("1 2 3\n")
        with pytest.raises(data.DataError, match=r": not an \.npy file \(it starts with b'1 2 '"):
            data.load_initial_indices(path, pool_size=10)

    def test_npz_instead_of_npy(self, tmp_path):
        path = _write_npz(tmp_path, "idx.npz", indices=np.array([1, 2]))
        with pytest.raises(data.DataError, match=r": is an \.npz archive"):
            data.load_initial_indices(path, pool_size=10)

    def test_object_array(self, tmp_path):
        path = str(tmp_path / "idx.npy")
        np.save(path, np.array([1, None], dtype=object), allow_pickle=True)
        with pytest.raises(data.DataError, match=r": not a readable \.npy file .*pickle"):
            data.load_initial_indices(path, pool_size=10)


class TestToModelRange:
    def test_hand_values(self):
        images = np.array([[[[0], [255]], [[127], [128]]]], np.uint8)
        scaled = data.to_model_range(images)
        assert scaled.dtype == tf.float32
        np.testing.assert_allclose(
            scaled.numpy()[0, ..., 0], [[-1.0, 1.0], [127 / 127.5 - 1, 128 / 127.5 - 1]], atol=1e-6
        )
        assert abs(float(scaled[0, 1, 0, 0])) < 0.01 and abs(float(scaled[0, 1, 1, 0])) < 0.01

    def test_tensor_input_in_graph(self):
        scale = tf.function(data.to_model_range)
        np.testing.assert_allclose(scale(tf.constant([0, 255], tf.uint8)).numpy(), [-1.0, 1.0])

    def test_rejects_float_images(self):
        with pytest.raises(TypeError, match="uint8"):
            data.to_model_range(np.zeros((1, 2, 2, 1), np.float32))


def _write_tfds_metadata(tfds_name, data_dir):
    """Writes a dataset's metadata as a prepared TFDS dataset would, so mock_data can use it."""
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    os.makedirs(builder.data_dir)
    builder.info.write_to_directory(builder.data_dir)


class TestLoadTfds:
    def test_not_prepared(self, tmp_path):
        with pytest.raises(data.DataError) as error:
            data.load_tfds(data.DATASETS["mnist"], str(tmp_path))
        assert _message(error) == (
            f"--dataset=mnist: TFDS dataset mnist is not prepared in --data_dir={tmp_path}; "
            "prepare it with tfds (download_and_prepare) or pass --data_file=PATH.npz"
        )

    def test_mnist_mock(self, tmp_path):
        data_dir = str(tmp_path)
        _write_tfds_metadata("mnist", data_dir)
        with tfds.testing.mock_data(
            num_examples=5, data_dir=data_dir, policy=tfds.testing.MockPolicy.USE_FILES
        ):
            spec, loaded = data.load_dataset("mnist", data_dir=data_dir)
            builder = tfds.builder("mnist", data_dir=data_dir)
            source = list(tfds.as_numpy(builder.as_dataset(split="train")))
        assert spec is data.DATASETS["mnist"]
        assert loaded.x_train.shape == (5, 28, 28, 1) and loaded.x_test.shape == (5, 28, 28, 1)
        assert loaded.x_train.dtype == np.uint8 and loaded.y_train.dtype == np.int64
        np.testing.assert_array_equal(loaded.x_train, np.stack([ex["image"] for ex in source]))
        np.testing.assert_array_equal(loaded.y_train, [ex["label"] for ex in source])
        assert loaded.num_classes == 10 and loaded.class_names == tuple("0123456789")

    def test_celeba_mock_random(self, tmp_path):
        data_dir = str(tmp_path)
        _write_tfds_metadata("celeb_a", data_dir)
        with tfds.testing.mock_data(
            num_examples=3, data_dir=data_dir, policy=tfds.testing.MockPolicy.USE_FILES
        ):
            loaded = data.load_tfds(data.DATASETS["celeba"], data_dir)
        assert loaded.x_train.shape == (3, 64, 64, 3) and loaded.x_test.shape == (3, 64, 64, 3)
        assert loaded.x_train.dtype == np.uint8
        assert set(loaded.y_train) <= {0, 1} and loaded.y_train.dtype == np.int64
        assert loaded.num_classes == 2 and loaded.class_names == ("female", "male")

    def test_celeba_crop_and_gender_label(self, tmp_path):
        data_dir = str(tmp_path)
        _write_tfds_metadata("celeb_a", data_dir)
        image = np.full((218, 178, 3), 255, np.uint8)
        image[20:198] = 100  # The crop keeps exactly these rows.
        males = [True, False, True]

        def as_dataset(*args, **kwargs):
            return tf.data.Dataset.from_tensor_slices(
                {"image": np.stack([image] * 3), "attributes": {"Male": np.array(males)}}
            )

        with tfds.testing.mock_data(
            data_dir=data_dir, policy=tfds.testing.MockPolicy.USE_FILES, as_dataset_fn=as_dataset
        ):
            loaded = data.load_tfds(data.DATASETS["celeba"], data_dir)
        np.testing.assert_array_equal(loaded.x_train, np.full((3, 64, 64, 3), 100, np.uint8))
        np.testing.assert_array_equal(loaded.y_train, [1, 0, 1])
        np.testing.assert_array_equal(loaded.y_test, [1, 0, 1])


class TestDemo:
    def test_demo_file(self):
        assert os.path.getsize(data.DEMO_FILE) <= 2 * 1024 * 1024
        loaded = data.load_npz(data.DEMO_FILE)
        assert loaded.x_train.shape == (5000, 28, 28, 1)
        assert loaded.x_test.shape == (1000, 28, 28, 1)
        assert loaded.num_classes == 10
        spec, via_flag = data.load_dataset("mnist", data_file=data.DEMO_FILE)
        assert spec.name == "mnist" and via_flag.pool_size == 5000

"""flags/definitions.py: which flagfile or recipe a dataset puts before the command line."""

import os
import tempfile

import numpy as np

from flags import definitions


def _npz(directory, image_shape, name="mine.npz"):
    path = os.path.join(directory, name)
    images = np.zeros((4,) + image_shape, np.uint8)
    np.savez(path, x_train=images, y_train=np.arange(4) % 2, x_test=images, y_test=np.arange(4) % 2)
    return path


def test_nearest_recipe_by_channels_and_size():
    assert definitions.nearest_recipe((28, 28, 1)) == "mnist"
    assert definitions.nearest_recipe((64, 64, 1)) == "mnist"
    assert definitions.nearest_recipe((32, 32, 3)) == "cifar10"
    assert definitions.nearest_recipe((32, 48, 3)) == "celeba"


def test_a_users_npz_takes_the_nearest_recipe_but_its_schedule():
    with tempfile.TemporaryDirectory() as directory:
        path = _npz(directory, (32, 32, 3))
        name, arguments = definitions.recipe_arguments(path)
        assert name == "cifar10"
        assert "--lr_discriminator=6e-4" in arguments
        assert not [argument for argument in arguments if argument.startswith(("--initial_labels", "--budget",
                                                                                "--cycles", "--initial_selection",
                                                                                "#"))]
        argv = definitions.with_dataset_flagfile(["main.py", f"--dataset={path}", "--lr_discriminator=1e-3"])
        assert argv[0] == "main.py" and argv[-2:] == [f"--dataset={path}", "--lr_discriminator=1e-3"]
        assert argv[1:-2] == arguments


def test_a_grey_npz_takes_the_mnist_recipe_but_its_initial_set():
    with tempfile.TemporaryDirectory() as directory:
        name, arguments = definitions.recipe_arguments(_npz(directory, (28, 28, 1), "grey.npz"))
    assert name == "mnist" and "--restart_each_cycle=discriminator,generator" in arguments
    assert not [argument for argument in arguments if argument.startswith("--initial_selection")]
    with open(os.path.join(definitions.FLAGFILE_DIR, "mnist.flags"), encoding="utf-8") as stream:
        assert "--initial_selection=typiclust" in stream.read().splitlines()


def test_built_in_datasets_keep_their_flagfile_and_unreadable_files_get_none():
    argv = definitions.with_dataset_flagfile(["main.py", "--dataset=svhn"])
    assert argv[1] == f"--flagfile={os.path.join(definitions.FLAGFILE_DIR, 'svhn.flags')}"
    with tempfile.TemporaryDirectory() as directory:
        garbage = os.path.join(directory, "garbage.npz")
        with open(garbage, "wb") as stream:
            stream.write(b"not a zip")
        assert definitions.recipe_arguments(garbage) is None
        assert definitions.recipe_arguments(os.path.join(directory, "missing.npz")) is None
        assert definitions.with_dataset_flagfile(["main.py", f"--dataset={garbage}"]) == \
            ["main.py", f"--dataset={garbage}"]

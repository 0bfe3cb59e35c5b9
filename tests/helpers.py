"""Tiny models, batches, the two-CPU strategy and benchmark-tool runs shared by the tests."""

import functools
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from aral_tf.cli import USAGE_EXIT_CODE
from aral_tf.distribution import make_strategy
from aral_tf.model import ARALModel
from aral_tf.networks import NetworkConfig
from aral_tf.pipeline import BatchStream
from aral_tf.training import Trainer

TINY_SHAPE = (8, 8, 1)


def tiny_config(architecture="mlp", image_shape=TINY_SHAPE, noise=0.0, **kwargs):
    """A small network config; noise and dropout off by default so steps are reproducible anywhere."""
    return NetworkConfig(image_shape=image_shape, num_classes=3, architecture=architecture, latent_dim=4,
                         width=0.02, sampler_units=16, input_noise_std=noise, hidden_noise_std=noise,
                         dropout_rate=noise, **kwargs)


def tiny_images(count, image_shape=TINY_SHAPE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count,) + tuple(image_shape), dtype=np.uint8)


def tiny_batch(config, batch_size=4, seed=0):
    """One training batch for `config` from a random pool of 20 images."""
    images = tiny_images(20, config.image_shape, seed)
    labeled = np.arange(5)
    labels = np.array([0, 1, 2, 0, 1])
    stream = BatchStream(images, labels, labeled, batch_size, config.latent_dim, config.num_classes, seed)
    return stream.next()


def trained_model(config, images, labels, steps=2, seed=0):
    """An ARALModel for `config` after `steps` training steps; images[:len(labels)] are the labeled ones."""
    keras.utils.set_random_seed(seed)
    model = ARALModel(config)
    trainer = Trainer(model, make_strategy("default"))
    stream = BatchStream(images, labels, np.arange(len(labels)), 4, config.latent_dim, config.num_classes, seed)
    for _ in range(steps):
        trainer.train_step(stream.next())
    return model


@functools.cache
def two_cpu_strategy():
    """A MirroredStrategy over the two logical CPUs of conftest.py, one for the whole test session.

    Strategies created side by side in one process number their collective
    ops alike, and a gather of one clashes with a reduction of another.
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def run_benchmark(module, *arguments):
    """Runs `python -m module arguments` from the repository root; returns the CompletedProcess."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, "-m", module, *arguments], capture_output=True, text=True, cwd=root,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600, check=False)


def assert_usage_error(result, culprit, output):
    """Exit code 2, one stderr line starting with `error: culprit`, and `output` not written."""
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {culprit}"), result.stderr
    assert not output.exists()


def error_line(capsys, call, code=USAGE_EXIT_CODE):
    """Runs `call`, which must exit with `code`; returns its one stderr line."""
    with pytest.raises(SystemExit) as exited:
        call()
    assert exited.value.code == code
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]

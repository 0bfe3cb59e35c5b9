"""Access to TF-GAN's loss functions on TensorFlow 2.21.

`import tensorflow_gan` fails on current TensorFlow: the package `__init__`
imports its Estimator integration, which needs the removed `tf.estimator`.
The loss implementations themselves only need `tensorflow`. This module
registers empty parent packages for `tensorflow_gan` and
`tensorflow_gan.python` (so their `__init__` files never run) and imports
`tensorflow_gan.python.losses.losses_impl` directly.

Use `tfgan_losses()` and nothing else from TF-GAN.
"""

import importlib
import importlib.util
import sys
import types

_PACKAGES = ("tensorflow_gan", "tensorflow_gan.python", "tensorflow_gan.python.losses")


def _register_bare_package(name):
    """Puts a module object for package `name` in sys.modules without running its __init__."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ImportError(f"{name} is not installed; pip install -r requirements.txt")
    module = types.ModuleType(name)
    module.__path__ = list(spec.submodule_search_locations)
    module.__spec__ = spec
    sys.modules[name] = module


def tfgan_losses():
    """Returns TF-GAN's `losses_impl` module (minimax, modified, ACGAN, ... losses)."""
    cached = sys.modules.get("tensorflow_gan.python.losses.losses_impl")
    if cached is not None:
        return cached
    for name in _PACKAGES:
        _register_bare_package(name)
    return importlib.import_module("tensorflow_gan.python.losses.losses_impl")

"""Training throughput: images/s of Alg. 1's step for the MNIST MLP and the CIFAR-10 CNN, with and without XLA.

    python -m benchmarks.throughput                     # every configuration, one JSON line each
    python -m benchmarks.throughput --models=mlp --widths=0.25

Each configuration builds the model with its dataset's flagfile settings
(batch 100 for MNIST, 64 for CIFAR-10), runs `--warm_up` steps (tracing and
XLA compilation), then times `Trainer.train` (the tf.data input pipeline
included) over the configuration's step count on a synthetic pool.
Images/s counts the three streams (labeled, unlabeled, generated). The
process's CPU seconds per step are given too: on a shared machine they
move less with other work than wall time does. The pipeline alone is
timed too, to show it is not the bottleneck. GFLOP/s of the step's dense matmuls
(`step_gflop`) stand beside a float32 2048x2048 matmul timed in the same process
(`matmul_gflops`, `step_to_matmul`). The command runs under mimalloc when it is
installed (aral_tf/allocator.py; ARAL_TF_ALLOCATOR=system for glibc's malloc).
"""

import argparse
import json
import os
import sys
import time

from aral_tf import allocator

if __name__ == "__main__":
    allocator.use_fast_allocator()  # Re-executes this command once with mimalloc preloaded.

# pylint: disable=wrong-import-position
import keras
import numpy as np
import tensorflow as tf

from aral_tf.distribution import make_strategy
from aral_tf.model import ARALModel
from aral_tf.networks import NetworkConfig
from aral_tf.pipeline import BatchStream, input_pipeline
from aral_tf.training import Trainer

# name: (image shape, architecture, the flagfile's batch size, timed steps per width)
MODELS = {
    "mlp": ((28, 28, 1), "mlp", 100, {0.25: 50, 0.5: 40, 1.0: 30}),
    "cnn": ((32, 32, 3), "cnn", 64, {0.25: 10, 0.5: 5, 1.0: 3}),
}
POOL_SIZE = 2000
LABELED = 100
MATMUL_SIZE = 2048
STREAMS = 3   # labeled, unlabeled and generated images per step


def step_gflop(model, batch_size):
    """GFLOP of a step's dense matmuls: 6 per kernel weight and image (2 forward, 4 backward), every
    network once on each stream. An estimate (each network sees each stream once); None for conv nets.

    For the MNIST MLP (width 1.0, batch 100): 3.97M kernel weights x 300 images x 6 = 7.14 GFLOP.
    """
    kernels = [variable for variable in model.trainable_variables if len(variable.shape) == 2]
    if any(len(variable.shape) == 4 for variable in model.trainable_variables):
        return None
    return 6 * sum(int(np.prod(variable.shape)) for variable in kernels) * STREAMS * batch_size / 1e9


def matmul_gflops(seconds=3.0, size=MATMUL_SIZE):
    """GFLOP/s of a float32 [size, size] @ [size, size] matmul in this process (its threads and allocator)."""
    a, b = (tf.random.uniform((size, size), seed=seed) for seed in (1, 2))
    (a @ b).numpy()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        (a @ b).numpy()
        count += 1
    return 2 * size ** 3 * count / (time.perf_counter() - started) / 1e9


def allocator_in_use():
    return "mimalloc" if "libmimalloc" in os.environ.get("LD_PRELOAD", "") else "system"


def measure(name, width, jit_compile, warm_up, noise=True, steps=None):
    image_shape, architecture, batch_size, steps_by_width = MODELS[name]
    steps = steps or steps_by_width[width]
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (POOL_SIZE,) + image_shape, dtype=np.uint8)
    labels = rng.integers(0, 10, LABELED)
    noise_settings = {} if noise else {"input_noise_std": 0.0, "hidden_noise_std": 0.0, "dropout_rate": 0.0}
    config = NetworkConfig(image_shape=image_shape, num_classes=10, architecture=architecture, width=width,
                           **noise_settings)
    model = ARALModel(config)
    trainer = Trainer(model, make_strategy("default"), jit_compile=jit_compile)

    def stream():
        return BatchStream(images, labels, np.arange(LABELED), batch_size, config.latent_dim, 10, seed=1)

    started = time.perf_counter()
    trainer.train(stream(), warm_up, verbose=False)
    warm_up_seconds = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train(stream(), steps, verbose=False)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    started = time.perf_counter()
    for _ in input_pipeline(stream(), steps):
        pass
    pipeline_seconds = time.perf_counter() - started
    gflop = step_gflop(model, batch_size)
    return {
        "model": name, "width": width, "jit_compile": jit_compile, "noise": noise, "batch_size": batch_size,
        "steps": steps,
        "warm_up_seconds": round(warm_up_seconds, 1), "seconds_per_step": round(seconds / steps, 4),
        "cpu_seconds_per_step": round(cpu_seconds / steps, 4),
        "train_images_per_second": round(3 * batch_size * steps / seconds, 1),
        "pipeline_batches_per_second": round(steps / pipeline_seconds, 1),
        "step_gflop": gflop and round(gflop, 2),
        "step_gflops": gflop and round(gflop * steps / seconds, 1),
        "allocator": allocator_in_use(),
        "load_average": round(os.getloadavg()[0], 2),
    }


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--widths", default="0.25,0.5,1.0")
    parser.add_argument("--jit", default="false,true", help="false, true or both")
    parser.add_argument("--warm_up", type=int, default=3)
    parser.add_argument("--without_noise", action="store_true", help="D without its noise and dropout layers")
    parser.add_argument("--steps", type=int, help="timed steps per configuration")
    args = parser.parse_args(argv)
    matmul = matmul_gflops()
    for name in args.models.split(","):
        for width in (float(value) for value in args.widths.split(",")):
            for jit_compile in (value == "true" for value in args.jit.split(",")):
                result = measure(name, width, jit_compile, args.warm_up, noise=not args.without_noise,
                                 steps=args.steps)
                result["matmul_gflops"] = round(matmul, 1)
                result["step_to_matmul"] = result["step_gflops"] and round(result["step_gflops"] / matmul, 3)
                print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

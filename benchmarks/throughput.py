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
timed too, to show it is not the bottleneck.
"""

import argparse
import json
import os
import sys
import time

import keras
import numpy as np

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
    return {
        "model": name, "width": width, "jit_compile": jit_compile, "noise": noise, "batch_size": batch_size,
        "steps": steps,
        "warm_up_seconds": round(warm_up_seconds, 1), "seconds_per_step": round(seconds / steps, 4),
        "cpu_seconds_per_step": round(cpu_seconds / steps, 4),
        "train_images_per_second": round(3 * batch_size * steps / seconds, 1),
        "pipeline_batches_per_second": round(steps / pipeline_seconds, 1),
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
    for name in args.models.split(","):
        for width in (float(value) for value in args.widths.split(",")):
            for jit_compile in (value == "true" for value in args.jit.split(",")):
                result = measure(name, width, jit_compile, args.warm_up, noise=not args.without_noise,
                                 steps=args.steps)
                print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Pool scoring at scale: images/s, peak memory, and the cost over a bare forward pass.

    python -m benchmarks.pool_scoring --pool_size=1000000

Scores a synthetic pool of MNIST-sized images (28x28x1 uint8, made on demand
from their indices, so the pool itself takes no memory) with the MNIST model
(MLP networks, `--width`), through ARAL's heuristic (`heuristics.LowestScore`) and the chosen
strategy. The bare pass runs `model.acquisition_outputs` (C, E and S) as one
tf.function returning the scores, on the same batches, with nothing else. Both passes alternate
over chunks of the pool so that load from other processes hits both alike.
Prints one JSON line.
"""

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import tensorflow as tf

from aral_tf.distribution import make_strategy
from aral_tf.heuristics import LowestScore, Request, select_lowest
from aral_tf.model import ARALModel
from aral_tf.networks import NetworkConfig

IMAGE_SHAPE = (28, 28, 1)
PIXELS = int(np.prod(IMAGE_SHAPE))


class SyntheticPool:
    """A pool of `size` uint8 images computed from their indices (a multiplicative hash), never stored."""

    def __init__(self, size):
        self._size = size
        self._pixel_offsets = np.arange(PIXELS, dtype=np.uint64) * np.uint64(40503)

    def __len__(self):
        return self._size

    def __getitem__(self, indices):
        indices = np.asarray(indices, dtype=np.uint64)
        hashed = (indices[:, None] * np.uint64(2654435761) + self._pixel_offsets) >> np.uint64(11)
        return (hashed & np.uint64(255)).astype(np.uint8).reshape((-1,) + IMAGE_SHAPE)


def current_rss_mib():
    with open("/proc/self/status", encoding="ascii") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_pool(model, pool, indices, batch_size, strategy):
    """ARAL's scores of `pool[indices]` as its acquisition computes them (batched through `strategy`)."""
    request = Request(model, pool, np.zeros(0, np.int64), budget=1, cycle=0, batch_size=batch_size, seed=0,
                      strategy=strategy)
    heuristic = LowestScore()
    return request.pool_outputs(lambda batch: heuristic.outputs(model, batch), indices)


def bare_pass(function, pool, indices, batch_size):
    for start in range(0, len(indices), batch_size):
        function(pool[indices[start:start + batch_size]]).numpy()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool_size", type=int, default=1_000_000)
    parser.add_argument("--batch_size", type=int, default=500, help="as --eval_batch_size")
    parser.add_argument("--width", type=float, default=1.0, help="as --width (MNIST default 1.0)")
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--chunks", type=int, default=4,
                        help="alternations of the two passes (each streamed chunk traces the scorer once)")
    args = parser.parse_args(argv)

    strategy = make_strategy(args.strategy)
    with strategy.scope():
        model = ARALModel(NetworkConfig(image_shape=IMAGE_SHAPE, num_classes=10, architecture="mlp",
                                        width=args.width))
    pool = SyntheticPool(args.pool_size)
    bare = tf.function(lambda images: model.acquisition_outputs(images)["score"])
    warm_up = np.arange(args.batch_size)
    score_pool(model, pool, warm_up, args.batch_size, strategy)
    bare_pass(bare, pool, warm_up, args.batch_size)
    rss_before = current_rss_mib()

    streamed_seconds = bare_seconds = 0.0
    chunk = -(-args.pool_size // args.chunks // args.batch_size) * args.batch_size
    scores = []
    for start in range(0, args.pool_size, chunk):
        indices = np.arange(start, min(start + chunk, args.pool_size))
        started = time.perf_counter()
        scores.append(score_pool(model, pool, indices, args.batch_size, strategy))
        streamed_seconds += time.perf_counter() - started
        started = time.perf_counter()
        bare_pass(bare, pool, indices, args.batch_size)
        bare_seconds += time.perf_counter() - started
    scores = np.concatenate(scores)
    selection_started = time.perf_counter()
    select_lowest(scores, np.arange(args.pool_size), budget=10)
    selection_seconds = time.perf_counter() - selection_started
    generation_started = time.perf_counter()
    for start in range(0, args.pool_size, args.batch_size):
        pool[np.arange(start, min(start + args.batch_size, args.pool_size))]
    generation_seconds = time.perf_counter() - generation_started

    print(json.dumps({
        "pool_size": args.pool_size, "batch_size": args.batch_size, "width": args.width,
        "strategy": args.strategy, "replicas": strategy.num_replicas_in_sync,
        "scored": int(scores.size), "finite_scores": bool(np.all(np.isfinite(scores))),
        "streamed_seconds": round(streamed_seconds, 1), "bare_seconds": round(bare_seconds, 1),
        "streamed_images_per_second": round(args.pool_size / streamed_seconds),
        "bare_images_per_second": round(args.pool_size / bare_seconds),
        "ratio_streamed_to_bare": round(streamed_seconds / bare_seconds, 3),
        "pool_generation_seconds": round(generation_seconds, 1),
        "selection_seconds": round(selection_seconds, 2),
        "rss_after_warm_up_mib": round(rss_before), "rss_at_end_mib": round(current_rss_mib()),
        "peak_rss_mib": round(peak_rss_mib()), "load_average": os.getloadavg()[0],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

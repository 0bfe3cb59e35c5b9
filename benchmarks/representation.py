"""How well a pretraining stage's representations cover the classes, for choosing the initial set.

    python -m benchmarks.representation --stage=CACHE/KEY --data_file=../shared/data/mnist.npz

For raw pixels, D's trunk features (under the averaged weights, as `pretrain.InitialSelection` reads
them) and E's codes conditioned on C's prediction: the purity of 10-cluster k-means and the
number of classes among TypiClust's first 10 and 20 picks (`heuristics.initial_selection`), for
seeds 0-2. Pool labels are read for this evaluation only. Prints one JSON line per representation.
"""

import argparse
import json

import numpy as np
import tensorflow as tf

from aral_tf import heuristics
from aral_tf.data import load_npz
from aral_tf.model import ARALModel, to_model_range
from aral_tf.networks import NetworkConfig
from aral_tf.run_state import RunDirectory
from aral_tf.training import predict_in_batches


def load_stage(stage_path):
    """The ARALModel of a finished pretraining stage directory (its run.json gives the network config)."""
    stage = RunDirectory(stage_path)
    with open(stage.run_path, encoding="utf-8") as stream:
        config = dict(json.load(stream)["identity"]["settings"]["network_config"])
    config["image_shape"] = tuple(config["image_shape"])
    model = ARALModel(NetworkConfig(**config))
    position = tf.Variable("", dtype=tf.string, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, model_variables=list(model.variables), position=position)
    checkpoint.restore(tf.train.latest_checkpoint(stage.checkpoint_dir)).expect_partial()
    return model


def purity(assignment, labels):
    """The share of points whose cluster's most common class is their own."""
    return sum(np.bincount(labels[assignment == cluster]).max() for cluster in np.unique(assignment)) / len(labels)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", required=True, help="a pretraining stage directory (CACHE/KEY or RUN/pretrain)")
    parser.add_argument("--data_file", required=True)
    parser.add_argument("--batch_size", type=int, default=500)
    args = parser.parse_args(argv)
    data = load_npz(args.data_file)
    images, labels = data.x_train, data.y_train
    model = load_stage(args.stage)

    def outputs(key):
        with model.averaged():
            return np.asarray(predict_in_batches(lambda batch: model.acquisition_outputs(batch)[key], images,
                                                 args.batch_size, verbose=False))

    representations = {"pixels": np.asarray(to_model_range(images)).reshape(len(images), -1),
                       "features": outputs("features"), "latent": outputs("latent")}
    for name, points in representations.items():
        assignment, _ = heuristics.kmeans(points, 10, seed=0)
        covered = {count: [len(np.unique(labels[heuristics.initial_selection(points, count, seed)]))
                           for seed in range(3)] for count in (10, 20)}
        print(json.dumps({"representation": name, "dimensions": points.shape[1],
                          "kmeans10_purity": round(float(purity(assignment, labels)), 4),
                          "classes_in_typiclust_10": covered[10], "classes_in_typiclust_20": covered[20]}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

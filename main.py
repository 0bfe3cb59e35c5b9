"""ARAL-TF: active learning with Adversarial Representation Active Learning.

    python main.py                                  # short offline demo on a bundled MNIST sample
    python main.py --dataset=mnist --data_file=mnist.npz --output_dir=runs/mnist
    python main.py ... --method=bald                # a baseline or ablation instead of ARAL (see README)

Each cycle co-trains E, G, D and S (Alg. 1), evaluates the classifier C on the
test split, queries the `--budget` unlabeled images with the lowest
S(E(x, C(x))) and asks the simulated oracle for their labels. Results go to
OUTPUT_DIR/results.jsonl and OUTPUT_DIR/cycle_K/{labeled,selected}.npy; at the end the
model goes to OUTPUT_DIR/model.keras and its SavedModels to OUTPUT_DIR/export.
"""

import datetime
import os
import sys
import tempfile


def _import_tensorflow_quietly():
    """Imports TensorFlow with native stderr muted: its C++ start-up lines (CUDA probing on a
    CPU-only host) come before logging is configured and would bury our one-line errors."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # pylint: disable=import-outside-toplevel,unused-import
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


_import_tensorflow_quietly()

# pylint: disable=wrong-import-position
from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from aral_tf import data as data_lib
from aral_tf.export import MODEL_FILE, save_run
from aral_tf.losses import LossWeights
from aral_tf.loop import LoopConfig, SimulatedOracle, run_active_learning, write_atomic
from aral_tf.methods import FULL, METHODS, build_method
from aral_tf.model import OptimizerConfig
from aral_tf.networks import NetworkConfig
from aral_tf.training import make_strategy
from flags import definitions

FLAGS = flags.FLAGS

USAGE_EXIT_CODE = 2


class UsageError(Exception):
    """A mistake in the command line or its input files; printed as one line, exit code 2."""


def with_dataset_flagfile(argv):
    """Puts the chosen dataset's flagfile right after the program name, so explicit flags win."""
    dataset = definitions.DEMO_DATASET
    for position, argument in enumerate(argv[1:], start=1):
        if argument.startswith("--dataset="):
            dataset = argument.split("=", 1)[1]
        elif argument == "--dataset" and position + 1 < len(argv):
            dataset = argv[position + 1]
    flagfile = definitions.flagfile_for(dataset)
    if flagfile is None:
        return list(argv)
    return [argv[0], f"--flagfile={flagfile}"] + list(argv[1:])


def parse_flags(argv):
    """absl flag parsing with the dataset's defaults; a bad flag exits with code 2 and one line."""
    try:
        return FLAGS(with_dataset_flagfile(argv))
    except flags.Error as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)


def _check_counts():
    for name, minimum in (("initial_labels", 1), ("budget", 1), ("cycles", 0), ("train_steps", 1),
                          ("batch_size", 1), ("eval_batch_size", 1), ("latent_dim", 1)):
        value = FLAGS[name].value
        if value < minimum:
            raise UsageError(f"--{name}={value}: must be at least {minimum}")
    if FLAGS.width <= 0:
        raise UsageError(f"--width={FLAGS.width}: must be positive")
    if FLAGS.method not in METHODS:
        raise UsageError(f"--method={FLAGS.method}: unknown method; choose one of {', '.join(METHODS)}")
    if FLAGS.mc_passes < 2:
        raise UsageError(f"--mc_passes={FLAGS.mc_passes}: must be at least 2")
    if not 0 <= FLAGS.classifier_average < 1:
        raise UsageError(f"--classifier_average={FLAGS.classifier_average}: must be in [0, 1)")


def _prepare_output_dir():
    output_dir = FLAGS.output_dir or os.path.join(
        "runs", f"{os.path.basename(FLAGS.dataset)}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    if os.path.exists(os.path.join(output_dir, "results.jsonl")):
        raise UsageError(f"--output_dir={output_dir}: already holds a run (results.jsonl); "
                         "choose a new directory")
    try:
        os.makedirs(output_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=output_dir):
            pass
    except OSError as error:
        raise UsageError(f"--output_dir={output_dir}: not writable ({error.strerror or error})") from None
    return output_dir


def _architecture(image_shape):
    if FLAGS.architecture != "auto":
        return FLAGS.architecture
    if image_shape[0] <= 28 and image_shape[1] <= 28:
        return "mlp"
    return "cnn" if image_shape[0] <= 32 and image_shape[1] <= 32 else "resnet"


def run():
    """Validates the flags and data, then runs active learning; returns the per-cycle records."""
    _check_counts()
    dataset, data_file = FLAGS.dataset, FLAGS.data_file
    if dataset == definitions.DEMO_DATASET:
        dataset, data_file = "mnist", data_file or data_lib.DEMO_FILE
    try:
        _, data = data_lib.load_dataset(dataset, data_file, FLAGS.data_dir)
        if FLAGS.initial_indices:
            initial = data_lib.load_initial_indices(FLAGS.initial_indices, data.pool_size)
        else:
            initial = data_lib.initial_indices(data.pool_size, FLAGS.initial_labels, FLAGS.seed)
    except data_lib.DataError as error:
        raise UsageError(str(error)) from None
    cycles, train_steps = FLAGS.cycles, FLAGS.train_steps
    if FLAGS.method == FULL:
        # One training on every label, as long as a whole active learning run trains.
        initial, cycles, train_steps = np.arange(data.pool_size, dtype=np.int64), 0, train_steps * (cycles + 1)
    elif len(initial) + FLAGS.budget * FLAGS.cycles >= data.pool_size:
        raise UsageError(
            f"--budget={FLAGS.budget}: {len(initial)} initial labels + {FLAGS.cycles} cycles x "
            f"{FLAGS.budget} leaves no unlabeled image in the pool of {data.pool_size}")
    try:
        network_config = NetworkConfig(
            image_shape=data.image_shape, num_classes=data.num_classes,
            architecture=_architecture(data.image_shape), latent_dim=FLAGS.latent_dim, width=FLAGS.width,
            input_noise_std=FLAGS.input_noise_std, hidden_noise_std=FLAGS.hidden_noise_std,
            dropout_rate=FLAGS.dropout_rate)
    except ValueError as error:
        raise UsageError(f"--architecture={FLAGS.architecture}: {error}") from None
    output_dir = _prepare_output_dir()

    keras.utils.set_random_seed(FLAGS.seed)
    tf.config.experimental.enable_op_determinism()
    strategy = make_strategy(FLAGS.strategy)
    if FLAGS.batch_size % strategy.num_replicas_in_sync:
        raise UsageError(f"--batch_size={FLAGS.batch_size}: not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas of --strategy={FLAGS.strategy}")
    write_atomic(os.path.join(output_dir, "flags.txt"), FLAGS.flags_into_string().encode())
    method = build_method(
        FLAGS.method, network_config,
        LossWeights(gan=FLAGS.lambda_gan, cls=FLAGS.lambda_cls, trd=FLAGS.lambda_trd,
                    adv=FLAGS.lambda_adv, beta=FLAGS.beta, feature_matching=FLAGS.feature_matching),
        OptimizerConfig(encoder_generator_lr=FLAGS.lr_encoder_generator,
                        discriminator_lr=FLAGS.lr_discriminator, sampler_lr=FLAGS.lr_sampler,
                        beta_1=FLAGS.adam_beta_1, discriminator_average_momentum=FLAGS.classifier_average),
        strategy, seed=FLAGS.seed, mc_passes=FLAGS.mc_passes)
    print(f"{FLAGS.method} on {FLAGS.dataset}: pool {data.pool_size}, test {len(data.y_test)}, "
          f"{data.num_classes} classes, {network_config.architecture} networks; results in {output_dir}",
          flush=True)
    loop_config = LoopConfig(budget=FLAGS.budget, cycles=cycles, train_steps=train_steps,
                             batch_size=FLAGS.batch_size, seed=FLAGS.seed, output_dir=output_dir,
                             eval_batch_size=FLAGS.eval_batch_size, verbose=FLAGS.progress)
    records = run_active_learning(method, strategy, data, initial, SimulatedOracle(data.y_train), loop_config,
                                  log=lambda message: print(message, flush=True))
    print("labels  test accuracy")
    for record in records:
        print(f"{record['num_labeled']:6d}  {record['test_accuracy']:.4f}")
    if method.aral_model is None:
        print(f"--method={FLAGS.method} trains no ARAL model: nothing saved beyond the results files")
        return records
    exported = save_run(method.aral_model, output_dir, export=FLAGS.export)
    print(f"model saved to {os.path.join(output_dir, MODEL_FILE)}; SavedModels: "
          f"{', '.join(exported.values()) or 'none (--noexport)'}")
    return records


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
    try:
        run()
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)
    except FloatingPointError as error:
        print(f"error: {error}; the results of the finished cycles are kept", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)

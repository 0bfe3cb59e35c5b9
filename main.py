"""ARAL-TF: active learning with Adversarial Representation Active Learning.

    python main.py                                  # short offline demo on a bundled MNIST sample
    python main.py --dataset=mnist --data_file=mnist.npz --output_dir=runs/mnist

Each cycle co-trains E, G, D and S (Alg. 1), evaluates the classifier C on the
test split, queries the `--budget` unlabeled images with the lowest
S(E(x, C(x))) and asks the simulated oracle for their labels. Results go to
OUTPUT_DIR/results.jsonl and OUTPUT_DIR/cycle_K/{labeled,selected}.npy.
"""

import datetime
import os
import shutil
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
import tensorflow as tf

from aral_tf import data as data_lib
from aral_tf.losses import LossWeights
from aral_tf.loop import LoopConfig, SimulatedOracle, run_active_learning, write_atomic
from aral_tf.model import ARALModel, OptimizerConfig
from aral_tf.networks import NetworkConfig
from aral_tf.summaries import TensorBoardLogger
from aral_tf.training import StrategyError, is_chief, make_strategy
from flags import definitions

FLAGS = flags.FLAGS
# TensorFlow's INFO lines (e.g. while probing for a TPU) would bury our one-line errors.
tf.get_logger().setLevel("WARNING")

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
    if not 0 <= FLAGS.classifier_average < 1:
        raise UsageError(f"--classifier_average={FLAGS.classifier_average}: must be in [0, 1)")


def _make_strategy():
    """The --strategy, built before any other TensorFlow work (multi-worker collectives need that)."""
    if FLAGS.strategy == "tpu" and not FLAGS.tpu:
        raise UsageError("--tpu: required with --strategy=tpu (a grpc:// address, Cloud TPU name or local)")
    if FLAGS.mixed_precision and not tf.config.list_physical_devices("GPU"):
        raise UsageError("--mixed_precision: needs a GPU and none is visible (float16 is slower than float32 "
                         "on a CPU)")
    try:
        strategy = make_strategy(FLAGS.strategy, tpu=FLAGS.tpu)
    except StrategyError as error:
        flag = f"--tpu={FLAGS.tpu}" if FLAGS.strategy == "tpu" else f"--strategy={FLAGS.strategy}"
        raise UsageError(f"{flag}: {error}") from None
    replicas = strategy.num_replicas_in_sync
    if FLAGS.batch_size % replicas:
        raise UsageError(f"--batch_size={FLAGS.batch_size}: not divisible by the "
                         f"{replicas} replicas of --strategy={FLAGS.strategy}")
    if FLAGS.jit_compile and replicas > 1:
        raise UsageError(f"--jit_compile: XLA cannot compile a step that synchronises {replicas} replicas "
                         f"(--strategy={FLAGS.strategy}; keras-team/keras#19005); use --strategy=default")
    return strategy


def _hyperparameters(network_config):
    """The run's settings for TensorBoard's HParams table."""
    names = ("dataset", "initial_labels", "budget", "cycles", "train_steps", "batch_size", "seed", "width",
             "latent_dim", "input_noise_std", "hidden_noise_std", "dropout_rate", "lambda_gan", "lambda_cls",
             "lambda_trd", "lambda_adv", "beta", "feature_matching", "lr_encoder_generator", "lr_discriminator",
             "lr_sampler", "adam_beta_1", "classifier_average", "strategy", "jit_compile", "mixed_precision")
    return {"architecture": network_config.architecture, **{name: FLAGS[name].value for name in names}}


def _require_writable(flag, directory):
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise UsageError(f"--{flag}={directory}: not writable ({error.strerror or error})") from None


def _prepare_output_dir():
    output_dir = FLAGS.output_dir or os.path.join(
        "runs", f"{os.path.basename(FLAGS.dataset)}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    if os.path.exists(os.path.join(output_dir, "results.jsonl")):
        raise UsageError(f"--output_dir={output_dir}: already holds a run (results.jsonl); "
                         "choose a new directory")
    _require_writable("output_dir", output_dir)
    if FLAGS.tensorboard_dir:
        _require_writable("tensorboard_dir", FLAGS.tensorboard_dir)
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
    strategy = _make_strategy()
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
    needed = len(initial) + FLAGS.budget * FLAGS.cycles
    if needed >= data.pool_size:
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
    if not is_chief(strategy):
        # Other workers of a multi-worker run compute the same steps; only the chief writes results.
        output_dir = tempfile.mkdtemp(prefix="aral-worker-")
        try:
            return _run_active_learning(strategy, data, initial, network_config, output_dir, chief=False)
        finally:
            shutil.rmtree(output_dir, ignore_errors=True)
    return _run_active_learning(strategy, data, initial, network_config, _prepare_output_dir(), chief=True)


def _run_active_learning(strategy, data, initial, network_config, output_dir, chief):
    keras.utils.set_random_seed(FLAGS.seed)
    tf.config.experimental.enable_op_determinism()
    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if chief:
        write_atomic(os.path.join(output_dir, "flags.txt"), FLAGS.flags_into_string().encode())
    with strategy.scope():
        model = ARALModel(
            network_config,
            LossWeights(gan=FLAGS.lambda_gan, cls=FLAGS.lambda_cls, trd=FLAGS.lambda_trd,
                        adv=FLAGS.lambda_adv, beta=FLAGS.beta, feature_matching=FLAGS.feature_matching),
            OptimizerConfig(encoder_generator_lr=FLAGS.lr_encoder_generator,
                            discriminator_lr=FLAGS.lr_discriminator, sampler_lr=FLAGS.lr_sampler,
                            beta_1=FLAGS.adam_beta_1, discriminator_average_momentum=FLAGS.classifier_average))
    print(f"ARAL on {FLAGS.dataset}: pool {data.pool_size}, test {len(data.y_test)}, "
          f"{data.num_classes} classes, {network_config.architecture} networks, "
          f"{strategy.num_replicas_in_sync} replica(s); results in {output_dir}", flush=True)
    loop_config = LoopConfig(budget=FLAGS.budget, cycles=FLAGS.cycles, train_steps=FLAGS.train_steps,
                             batch_size=FLAGS.batch_size, seed=FLAGS.seed, output_dir=output_dir,
                             eval_batch_size=FLAGS.eval_batch_size, verbose=FLAGS.progress,
                             jit_compile=FLAGS.jit_compile)
    logger = None
    if chief and FLAGS.tensorboard_dir:
        logger = TensorBoardLogger(FLAGS.tensorboard_dir, _hyperparameters(network_config), network_config,
                                   seed=FLAGS.seed)
    try:
        records = run_active_learning(model, strategy, data, initial, SimulatedOracle(data.y_train),
                                      loop_config, log=lambda message: print(message, flush=True),
                                      callbacks=logger)
    finally:
        if logger:
            logger.close()
    print("labels  test accuracy")
    for record in records:
        print(f"{record['num_labeled']:6d}  {record['test_accuracy']:.4f}")
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

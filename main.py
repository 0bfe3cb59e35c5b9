"""ARAL-TF: active learning with Adversarial Representation Active Learning.

    python main.py                                  # short offline demo on a bundled MNIST sample
    python main.py --dataset=mnist --data_file=mnist.npz --output_dir=runs/mnist

Each cycle co-trains E, G, D and S (Alg. 1), evaluates the classifier C on the
test split, queries the `--budget` unlabeled images with the lowest
S(E(x, C(x))) and asks the oracle (simulated, or a person with --oracle=files)
for their labels. Results go to OUTPUT_DIR/results.jsonl and
OUTPUT_DIR/cycle_K/{labeled,labels,selected}.npy; at the end the model goes to
OUTPUT_DIR/model.keras and its SavedModels to OUTPUT_DIR/export. Running the same
command on an existing OUTPUT_DIR continues that run where it stopped.
"""

import contextlib
import datetime
import errno
import functools
import math
import os
import shutil
import tempfile

from aral_tf import allocator  # Imports no TensorFlow.
from aral_tf.cli import import_tensorflow_quietly  # Imports no TensorFlow.

if __name__ == "__main__":
    allocator.use_fast_allocator()  # Re-executes this command once with mimalloc preloaded.
import_tensorflow_quietly()

# pylint: disable=wrong-import-position
from absl import app, flags
import keras
import numpy as np
import tensorflow as tf

from aral_tf import cli, heuristics, image_folders, resources
from aral_tf import data as data_lib
from aral_tf import export as export_lib
from aral_tf.cli import FAILURE_EXIT_CODE, UsageError, fail, one_line, refuse_arguments, require_writable
from aral_tf.distribution import StrategyError, is_chief, make_strategy, same_on_every_worker
from aral_tf.export import CLASSIFIER, EXPORT_SUBDIR, MODEL_FILE, SAMPLER, latest_export, save_run
from aral_tf.learner import NETWORKS
from aral_tf.loop import LoopConfig, run_active_learning
from aral_tf.losses import LossWeights
from aral_tf.methods import ARAL_TRAINED_METHODS, FULL, METHODS, build_learner, build_method
from aral_tf.model import OptimizerConfig
from aral_tf.networks import NetworkConfig
from aral_tf.oracle import AwaitingLabels, FileOracle, LabelsFileError, SimulatedOracle
from aral_tf.plots import PLOT_FILE
from aral_tf.pretrain import InitialSelection, PretrainStage
from aral_tf.run_state import LOCK_FILE, IdentityMismatch, RunDirectory, RunStateError, data_fingerprint, write_atomic
from aral_tf.summaries import TensorBoardLogger
from flags import definitions

FLAGS = flags.FLAGS

# TensorFlow's INFO lines (e.g. while probing for a TPU) and Python warnings (e.g. about an unreadable
# checkpoint state file) would add lines to our one-line errors; our own checks report those problems.
tf.get_logger().setLevel("ERROR")


def parse_flags(argv):
    """absl flag parsing with the chosen dataset's flagfile first; a bad flag exits with code 2 and one line."""
    return cli.parse_flags(argv, FLAGS, prepare=definitions.with_dataset_flagfile)


def _check_counts():
    """Checks what absl's bounds (flags/definitions.py) cannot."""
    if not FLAGS.width > 0 or not math.isfinite(FLAGS.width):
        raise UsageError(f"--width={FLAGS.width}: must be positive")
    if FLAGS.method not in METHODS:
        raise UsageError(f"--method={FLAGS.method}: unknown method; choose one of {', '.join(METHODS)}")
    unknown = [name for name in FLAGS.restart_each_cycle if name not in NETWORKS]
    if unknown:
        raise UsageError(f"--restart_each_cycle={','.join(FLAGS.restart_each_cycle)}: unknown network "
                         f"{unknown[0]!r}; choose from {', '.join(NETWORKS)}")
    unknown = [name for name in FLAGS.pretrain_networks if name not in NETWORKS]
    if unknown:
        raise UsageError(f"--pretrain_networks={','.join(FLAGS.pretrain_networks)}: unknown network "
                         f"{unknown[0]!r}; choose from {', '.join(NETWORKS)}")
    if FLAGS.selection != "lowest" and FLAGS.method != "aral" and definitions.given_explicitly("selection"):
        raise UsageError(f"--selection={FLAGS.selection}: only with --method=aral (not --method={FLAGS.method})")
    for name in ("lr_encoder_generator", "lr_discriminator", "lr_sampler", "lr_classifier"):
        if not FLAGS[name].value > 0 or not math.isfinite(FLAGS[name].value):
            raise UsageError(f"--{name}={FLAGS[name].value}: must be positive")
    for name in ("lambda_gan", "lambda_cls", "lambda_trd", "lambda_adv", "beta", "feature_matching",
                 "class_feature_matching", "generator_gan", "generated_cls", "input_noise_std",
                 "hidden_noise_std"):
        if not FLAGS[name].value >= 0 or not math.isfinite(FLAGS[name].value):
            raise UsageError(f"--{name}={FLAGS[name].value}: must be a finite number >= 0")
    if FLAGS.initial_selection == "typiclust_features" and (
            not FLAGS.pretrain_steps or "discriminator" not in FLAGS.pretrain_networks):
        raise UsageError("--initial_selection=typiclust_features: needs --pretrain_steps > 0 and discriminator "
                         "in --pretrain_networks (the features are those of the pretrained D)")
    if (FLAGS.initial_selection != "random" and FLAGS.initial_indices
            and definitions.given_explicitly("initial_selection")):
        raise UsageError(f"--initial_selection={FLAGS.initial_selection}: cannot be combined with --initial_indices "
                         f"(which gives the initial set); drop one of the two")
    for name in ("classifier_average", "adam_beta_1", "dropout_rate"):
        if not 0 <= FLAGS[name].value < 1:
            raise UsageError(f"--{name}={FLAGS[name].value}: must be in [0, 1)")


def _aral_selection():
    """ARAL's query rule in place of its own (None: the paper's lowest S); the other methods keep theirs,
    so that a dataset flagfile's --selection does not bar them."""
    return FLAGS.selection if FLAGS.method == "aral" and FLAGS.selection != "lowest" else None


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
             "lambda_trd", "lambda_adv", "beta", "feature_matching", "class_feature_matching", "generator_gan",
             "generated_cls", "lr_encoder_generator", "lr_discriminator", "lr_sampler", "lr_classifier",
             "adam_beta_1", "classifier_average", "strategy", "jit_compile", "mixed_precision",
             "method", "mc_passes", "selection")
    return {"architecture": network_config.architecture, **{name: FLAGS[name].value for name in names},
            "restart_each_cycle": ",".join(FLAGS.restart_each_cycle)}


# Identity flags in the order a mismatch is reported (the others follow alphabetically).
_IDENTITY_FIRST = ("dataset", "data_file", "seed", "budget", "initial_labels", "initial_indices", "batch_size",
                   "train_steps", "oracle", "architecture", "width", "latent_dim")
_DATA_KEY = "pool_fingerprint"


def _identity(data):
    """The flags a resumed run must keep, and what identifies the data (see definitions.MAY_CHANGE_ON_RESUME)."""
    def report_order(name):
        return (_IDENTITY_FIRST.index(name) if name in _IDENTITY_FIRST else len(_IDENTITY_FIRST), name)

    names = sorted((flag.name for flag in FLAGS.get_flags_for_module(definitions)
                    if flag.name not in definitions.MAY_CHANGE_ON_RESUME), key=report_order)
    return {**{name: FLAGS[name].value for name in names}, _DATA_KEY: data_fingerprint(data)}


def _mismatch_message(mismatch):
    advice = "continue it with the same value or choose a new --output_dir"
    if mismatch.key == _DATA_KEY:
        source = f"--data_file={FLAGS.data_file}" if FLAGS.data_file else f"--dataset={FLAGS.dataset}"
        return (f"{source}: these are not the data this run was started with (their number, shape, classes or "
                f"the SHA-256 of x_train, y_train, x_test and y_test differs); {advice}")
    given = f"--{mismatch.key}" + ("" if mismatch.given is None else f"={mismatch.given}")
    started = (f"without --{mismatch.key}" if mismatch.started is None
               else f"with --{mismatch.key}={mismatch.started}")
    return f"{given}: this run was started {started}; {advice}"


def _output_dir():
    """The output directory, created and checked writable (and --tensorboard_dir with it).

    A directory that holds files but no run.json is refused before anything is written: it is not a run.
    """
    output_dir = FLAGS.output_dir or os.path.join(
        "runs", f"{os.path.basename(os.path.normpath(FLAGS.dataset))}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    run_dir = RunDirectory(output_dir)
    if run_dir.holds_run_files() and not os.path.exists(run_dir.run_path):
        raise UsageError(f"--output_dir={output_dir}: holds run files but no run.json (a run of an older "
                         "version?); choose a new directory")
    if run_dir.holds_other_files():
        raise UsageError(f"--output_dir={output_dir}: holds files but no run.json, so it is not a run; "
                         "choose a new or empty directory (nothing in it was changed)")
    require_writable("output_dir", output_dir)
    if FLAGS.tensorboard_dir:
        require_writable("tensorboard_dir", FLAGS.tensorboard_dir)
    return output_dir


def _open_run(run_dir, data, initial):
    """Starts a new run in `run_dir` or checks that this command may continue the one there.

    Returns the records of the run's finished cycles.
    """
    if not os.path.exists(run_dir.run_path):
        run_dir.open_run(_identity(data))
        write_atomic(os.path.join(run_dir.path, "flags.txt"), FLAGS.flags_into_string().encode())
        return []
    try:
        run_dir.open_run(_identity(data))
    except IdentityMismatch as mismatch:
        raise UsageError(_mismatch_message(mismatch)) from None
    records = run_dir.read_results()
    if len(records) > FLAGS.cycles + 1:
        raise UsageError(f"--cycles={FLAGS.cycles}: this run already finished cycle {len(records) - 1}; "
                         f"give --cycles={len(records) - 1} or more")
    if (initial is not None and run_dir.has(0, "labeled.npy")
            and not np.array_equal(run_dir.load_array(0, "labeled.npy"), initial)):
        source = (f"--initial_indices={FLAGS.initial_indices}" if FLAGS.initial_indices
                  else f"--initial_labels={FLAGS.initial_labels}")
        raise UsageError(f"{source}: not the initial labeled set this run was started with "
                         f"({run_dir.cycle_file(0, 'labeled.npy')})")
    return records


def _check_memory(data):
    """Refuses a batch that cannot fit in the memory left beside the loaded data (resources.batch_bytes)."""
    available = resources.available_memory()
    if available is None:
        return
    for name, images in (("eval_batch_size", FLAGS.eval_batch_size), ("batch_size", 3 * FLAGS.batch_size)):
        needed = resources.batch_bytes(images, data.image_shape)
        if needed > available:
            raise UsageError(f"--{name}={FLAGS[name].value}: a batch of {images} images of "
                             f"{'x'.join(map(str, data.image_shape))} needs about {resources.size_text(needed)} of "
                             f"memory, {resources.size_text(available)} is available")


def _check_disk(run_dir, learner):
    """Refuses a run whose checkpoints, model.keras and export cannot fit on the disk (resources.save_bytes)."""
    free = resources.free_disk(run_dir.path)
    needed = resources.save_bytes(learner.variables)
    if free is not None and needed > free:
        raise UsageError(f"--output_dir={run_dir.path}: its checkpoints, model.keras and export need about "
                         f"{resources.size_text(needed)}, {resources.size_text(free)} is free there")


def _disk_full_message(error):
    """The one line for a write that found the disk full (an OSError or TensorFlow's error), else None."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        where = error.filename or FLAGS.output_dir
        free = resources.free_disk(where)
        space = "" if free is None else f" ({resources.size_text(free)} free)"
        what = f"{where}: no space left on device{space}"
    elif isinstance(error, tf.errors.OpError) and "No space left on device" in str(error):
        what = f"no space left on device ({one_line(error.message, limit=300)})"
    else:
        return None
    return (f"{what}; the finished cycles and the last complete checkpoint are kept: free some space and run "
            "the same command again")


def _architecture(image_shape):
    if FLAGS.architecture != "auto":
        return FLAGS.architecture
    if image_shape[0] <= 28 and image_shape[1] <= 28:
        return "mlp"
    return "cnn" if image_shape[0] <= 32 and image_shape[1] <= 32 else "resnet"


_FOLDER_FLAGS = ("image_size", "channels", "class_names")


def _load_data():
    """The --dataset: the demo's sample, a registered dataset, an .npz or a folder of images."""
    dataset, data_file = FLAGS.dataset, FLAGS.data_file
    if dataset == definitions.DEMO_DATASET:
        dataset, data_file = "mnist", data_file or data_lib.DEMO_FILE
    elif image_folders.is_image_folder(dataset):
        if data_file:
            raise UsageError(f"--data_file={data_file}: cannot be combined with --dataset={dataset}, a folder of "
                             "images")
        channels = 0 if FLAGS.channels == "auto" else int(FLAGS.channels)
        return image_folders.load_image_folder(dataset, FLAGS.image_size, channels, FLAGS.class_names)
    given = [name for name in _FOLDER_FLAGS if FLAGS[name].present]
    if given:
        raise UsageError(f"--{given[0]}: only with --dataset=DIR, a folder of images (not --dataset={FLAGS.dataset})")
    return data_lib.load_dataset(dataset, data_file, FLAGS.data_dir)[1]


def _initial_count(initial):
    return FLAGS.initial_labels if initial is None else len(initial)


def run():
    """Validates the flags and data, then runs active learning; returns the per-cycle records."""
    _check_counts()
    strategy = _make_strategy()
    try:
        data = _load_data()
        if FLAGS.initial_indices:
            initial = data_lib.load_initial_indices(FLAGS.initial_indices, data.pool_size)
            if definitions.given_explicitly("initial_labels") and FLAGS.initial_labels != len(initial):
                raise UsageError(f"--initial_labels={FLAGS.initial_labels}: --initial_indices="
                                 f"{FLAGS.initial_indices} gives {len(initial)} initial labels; drop one of the two")
        elif FLAGS.initial_selection == "random":
            initial = data_lib.initial_indices(data.pool_size, FLAGS.initial_labels, FLAGS.seed)
        else:
            initial = None  # Chosen by the run from its pretrained representation (`_initial_chooser`).
    except data_lib.DataError as error:
        raise UsageError(str(error)) from None
    if data.y_train is None and FLAGS.oracle != "files":
        raise UsageError(f"--oracle={FLAGS.oracle}: the pool of --dataset={FLAGS.dataset} has no labels to "
                         "simulate; label it yourself with --oracle=files")
    _check_memory(data)
    cycles, train_steps = FLAGS.cycles, FLAGS.train_steps
    if FLAGS.method == FULL:
        # The upper bound: one training on every label, as long as the whole schedule.
        initial, cycles, train_steps = np.arange(data.pool_size, dtype=np.int64), 0, train_steps * (cycles + 1)
    elif _initial_count(initial) + FLAGS.budget * FLAGS.cycles >= data.pool_size:
        raise UsageError(
            f"--budget={FLAGS.budget}: {_initial_count(initial)} initial labels + {FLAGS.cycles} cycles x "
            f"{FLAGS.budget} leaves no unlabeled image in the pool of {data.pool_size}")
    try:
        network_config = NetworkConfig(
            image_shape=data.image_shape, num_classes=data.num_classes,
            architecture=_architecture(data.image_shape), latent_dim=FLAGS.latent_dim, width=FLAGS.width,
            input_noise_std=FLAGS.input_noise_std, hidden_noise_std=FLAGS.hidden_noise_std,
            dropout_rate=FLAGS.dropout_rate)
    except ValueError as error:
        raise UsageError(f"--architecture={FLAGS.architecture}: {error}") from None
    keras.utils.set_random_seed(FLAGS.seed)
    tf.config.experimental.enable_op_determinism()
    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if is_chief(strategy):
        run_dir = RunDirectory(_output_dir())
        with run_dir.locked():
            records = _run_in(run_dir, data, initial, network_config, strategy, cycles, train_steps)
    else:
        with _worker_copy() as run_dir:
            records = _run_in(run_dir, data, initial, network_config, strategy, cycles, train_steps)
    return records


@contextlib.contextmanager
def _worker_copy():
    """A private copy of the chief's run directory for a non-chief worker of a multi-worker run.

    Every worker computes the same steps; only the chief writes to --output_dir (and --tensorboard_dir).
    A worker does the same writes in a temporary directory, deleted at the end. It starts from a copy
    of --output_dir as it finds it (a shared directory), so that it continues a resumed run from the
    chief's checkpoint; where it cannot see the chief's directory, it starts anew, and
    `_check_workers_agree` stops every worker if the chief does not.
    """
    worker_dir = tempfile.mkdtemp(prefix="aral-worker-")
    try:
        run_path = os.path.join(worker_dir, "run")
        if FLAGS.output_dir and os.path.isdir(FLAGS.output_dir):
            shutil.copytree(FLAGS.output_dir, run_path, ignore=shutil.ignore_patterns(LOCK_FILE))
        yield RunDirectory(run_path)
    finally:
        shutil.rmtree(worker_dir, ignore_errors=True)


def _run_in(run_dir, data, initial, network_config, strategy, cycles, train_steps):
    """Starts or continues the run in `run_dir`; returns the records of its cycles."""
    records = _open_run(run_dir, data, initial)
    if FLAGS.method == FULL and records and records[0].get("train_steps") != train_steps:
        raise UsageError(f"--cycles={FLAGS.cycles}: this full run trained {records[0].get('train_steps')} steps, "
                         f"not --train_steps x (--cycles + 1) = {train_steps}; give the --cycles it was started "
                         "with or choose a new --output_dir")
    finished = len(records) == cycles + 1 and _saved(run_dir)
    _check_workers_agree(strategy, run_dir, len(records), finished)
    if finished:
        print(f"The run in {run_dir.path} has finished all {cycles + 1} cycles; give a larger --cycles "
              "to continue it.")
        exported = latest_export(os.path.join(run_dir.path, EXPORT_SUBDIR)) if FLAGS.export else {}
    else:
        records, exported = _continue_run(run_dir, records, data, initial, network_config, strategy, cycles,
                                          train_steps)
    print(f"results: {run_dir.results_path}, plot: {os.path.join(run_dir.path, PLOT_FILE)}")
    print("labels  test accuracy")
    for record in records:
        print(f"{record['num_labeled']:6d}  {record['test_accuracy']:.4f}")
    print(_closing_line(run_dir, records[-1], exported), flush=True)
    return records


def _closing_line(run_dir, record, exported):
    """The run's end in one line: labels used, test accuracy, and where the classifier and sampler are."""
    if exported:
        saved = f"classifier {exported[CLASSIFIER]}, sampler {exported[SAMPLER]}"
    elif FLAGS.method in ARAL_TRAINED_METHODS:
        saved = f"model {os.path.join(run_dir.path, MODEL_FILE)} (no SavedModels: --noexport)"
    else:
        saved = f"no model saved (--method={FLAGS.method} trains no ARAL model)"
    return f"done: {record['num_labeled']} labels, test accuracy {record['test_accuracy']:.4f}; {saved}"


def _check_workers_agree(strategy, run_dir, finished_cycles, finished):
    """The workers of a multi-worker run must find the same run state (a worker that cannot see the
    chief's directory starts anew): each compares its finished cycles and newest checkpoint with the others'."""
    newest = run_dir.newest_checkpoint_number()
    if not same_on_every_worker(strategy, (finished_cycles, newest, int(finished))):
        raise UsageError(f"--output_dir={FLAGS.output_dir}: the workers of this multi-worker run find "
                         f"different run states (this one: {finished_cycles} finished cycles, newest checkpoint "
                         f"{newest}); give every worker the chief's --output_dir on a shared filesystem")


def _saved(run_dir):
    """Whether the end of the run was saved (ARAL-trained methods): model.keras and, with --export, an
    export whose newest version holds both models, none half-written."""
    if FLAGS.method not in ARAL_TRAINED_METHODS:
        return True
    return os.path.exists(os.path.join(run_dir.path, MODEL_FILE)) and (
        not FLAGS.export or export_lib.is_complete(os.path.join(run_dir.path, EXPORT_SUBDIR)))


def _continue_run(run_dir, records, data, initial, network_config, strategy, cycles, train_steps):
    """Builds the model, runs (or continues) active learning in `run_dir` and saves the final model.

    Returns the records of all cycles and the export's version dirs by name ({} without one). A run
    whose cycles are all done only restores its last checkpoint and saves it (a process stopped before saving).
    """
    run_dir.remove_temporaries()
    export_lib.remove_temporaries(os.path.join(run_dir.path, EXPORT_SUBDIR))
    loss_weights = LossWeights(
        gan=FLAGS.lambda_gan, cls=FLAGS.lambda_cls, trd=FLAGS.lambda_trd, adv=FLAGS.lambda_adv, beta=FLAGS.beta,
        feature_matching=FLAGS.feature_matching, class_feature_matching=FLAGS.class_feature_matching,
        generator_gan=FLAGS.generator_gan, generated_cls=FLAGS.generated_cls,
        generated_cls_confidence=FLAGS.generated_cls_confidence,
        sampler_reads_prediction=FLAGS.sampler_conditioning == "prediction")
    optimizer_config = OptimizerConfig(
        encoder_generator_lr=FLAGS.lr_encoder_generator, discriminator_lr=FLAGS.lr_discriminator,
        sampler_lr=FLAGS.lr_sampler, classifier_lr=FLAGS.lr_classifier, beta_1=FLAGS.adam_beta_1,
        discriminator_average_momentum=FLAGS.classifier_average)
    representation = None
    if FLAGS.initial_selection == "typiclust_features" and FLAGS.method not in ARAL_TRAINED_METHODS:
        # Built before the method's own learner, so that it starts as an ARAL run's model does and shares its
        # pretraining stage (a cache entry is identified by the model's starting weights too).
        representation = build_learner("aral", network_config, loss_weights, optimizer_config, strategy)
    method = build_method(FLAGS.method, network_config, loss_weights, optimizer_config, strategy, seed=FLAGS.seed,
                          mc_passes=FLAGS.mc_passes, jit_compile=FLAGS.jit_compile,
                          selection=_aral_selection())
    _check_disk(run_dir, method.learner)
    stage = None
    if FLAGS.pretrain_steps:
        stage = PretrainStage(run_dir.path, FLAGS.pretrain_cache_dir, data_fingerprint(data), FLAGS.pretrain_steps,
                              FLAGS.batch_size, FLAGS.seed, FLAGS.checkpoint_every, verbose=FLAGS.progress,
                              kept=FLAGS.pretrain_networks)
    if initial is None and FLAGS.initial_selection == "typiclust":
        initial = functools.partial(heuristics.pixel_initial_selection, data.x_train, FLAGS.initial_labels, FLAGS.seed)
    elif initial is None:
        initial = InitialSelection(representation or method.aral_model, representation is not None, stage, data.x_train,
                                   FLAGS.initial_labels, FLAGS.seed, FLAGS.eval_batch_size, strategy,
                                   verbose=FLAGS.progress, log=lambda message: print(message, flush=True))
    action = f"continuing at cycle {len(records)}" if records else "results"
    print(f"{FLAGS.method} on {FLAGS.dataset}: pool {data.pool_size}, test {len(data.y_test)}, "
          f"{data.num_classes} classes, {network_config.architecture} networks, "
          f"{strategy.num_replicas_in_sync} replica(s); {action} in {run_dir.path}", flush=True)
    recipe = definitions.recipe_arguments(FLAGS.dataset)
    if recipe:
        print(f"recipe: flags/{recipe[0]}.flags, the built-in dataset nearest to "
              f"{'x'.join(map(str, data.image_shape))} "
              f"images, all but {', '.join('--' + name for name in definitions.RECIPE_EXCEPTIONS)}; "
              "flags given here override it", flush=True)
    if FLAGS.oracle == "files":
        oracle = FileOracle(data.x_train, run_dir.queries_dir, data.num_classes,
                            data.class_names, sources=data.pool_files)
    else:
        oracle = SimulatedOracle(data.y_train)
    loop_config = LoopConfig(budget=FLAGS.budget, cycles=cycles, train_steps=train_steps,
                             batch_size=FLAGS.batch_size, seed=FLAGS.seed, output_dir=run_dir.path,
                             eval_batch_size=FLAGS.eval_batch_size, verbose=FLAGS.progress,
                             checkpoint_every=FLAGS.checkpoint_every,
                             restart_each_cycle=tuple(FLAGS.restart_each_cycle))
    logger = None
    if FLAGS.tensorboard_dir and is_chief(strategy):
        logger = TensorBoardLogger(FLAGS.tensorboard_dir, _hyperparameters(network_config), network_config,
                                   seed=FLAGS.seed)
    try:
        records = run_active_learning(method, strategy, data, initial, oracle, loop_config,
                                      log=lambda message: print(message, flush=True), callbacks=logger,
                                      pretrain=stage)
    finally:
        if logger:
            logger.close()
    if method.aral_model is None:
        return records, {}
    return records, save_run(method.aral_model, run_dir.path, export=FLAGS.export)


def main(argv):
    refuse_arguments(argv)
    try:
        run()
    except AwaitingLabels as request:
        print(f"Waiting for labels: {request}", flush=True)
    except (UsageError, RunStateError, LabelsFileError) as error:
        fail(error)
    except FloatingPointError as error:
        fail(f"{error}; the finished cycles and the last good checkpoint are kept", FAILURE_EXIT_CODE)
    except (OSError, tf.errors.OpError) as error:
        message = _disk_full_message(error)
        if message is None:
            raise
        fail(message, FAILURE_EXIT_CODE)


def console_main():
    """The `aral-tf` console command: `python main.py` with the same flags."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    console_main()

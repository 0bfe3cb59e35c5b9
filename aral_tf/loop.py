"""The active learning loop of Alg. 1, resumable from its output directory.

Each cycle K: ask the oracle for the labels of the images selected after cycle K-1 (cycle 0: the
initial set), train, evaluate, redraw accuracy_vs_labels.png. The files it keeps are listed in
aral_tf/run_state.py. Running it again on the same directory continues where the previous process
stopped, with the same result as a run that was never interrupted:
- a cycle whose record is in results.jsonl is done;
- the labeled set of a cycle, once saved (cycle_K/labels.npy), is reused; the selection after a
  cycle (cycle_K/selected.npy) too;
- training restarts from the newest checkpoint (written every `checkpoint_every` steps and at the
  end of each cycle), with the batch stream's generator state and loss sums saved in it;
- evaluation and selection are deterministic functions of the checkpointed model, so they are
  simply repeated when a process stopped in them.
"""

import dataclasses
import os
import time

import numpy as np

from aral_tf.data import initialization_images
from aral_tf.heuristics import LowestScore
from aral_tf.methods import Method
from aral_tf.plots import PLOT_FILE, accuracy_png, run_rows
from aral_tf.run_state import RunCheckpoint, RunDirectory, RunStateError, TrainingPosition, write_atomic
from aral_tf.training import predict_in_batches


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    """The schedule of an active learning run."""

    budget: int
    cycles: int
    train_steps: int
    batch_size: int
    seed: int
    output_dir: str
    eval_batch_size: int = 500
    verbose: bool = True
    checkpoint_every: int = 500
    # Networks (ARAL's names) put back to their start-of-run weights before each cycle after the first
    # (`ARALModel.restart`; for the baselines, the networks in those roles); the others are warm-started.
    restart_each_cycle: tuple = ()


def evaluate(model, images, labels, batch_size, strategy=None):
    """Test accuracy of the classifier C."""
    logits = predict_in_batches(model.classify, images, batch_size, strategy=strategy)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def _ignore_event(kind, cycle, detail):  # pylint: disable=unused-argument
    return None


def run_active_learning(model, strategy, data, initial_indices, oracle, config, log=print, on_event=None,
                        callbacks=None, pretrain=None):
    """Alg. 1: labels, trains and evaluates cycles 0..`config.cycles`, continuing the run in `config.output_dir`.

    Before the first cycle of a new run, D's weight-normalised layers are initialised from 500 pool
    images drawn with the seed (images only; no labels are read), and an ARAL-trained method's model
    goes through `pretrain` (a `pretrain.PretrainStage`), whose weights become its start weights.
    `initial_indices` is the initial labeled set, or a function of no arguments that chooses it
    (label-blind; called when cycle 0's labels are not saved yet). The model is warm-started across
    cycles, except the networks of `config.restart_each_cycle`, which start each cycle after the
    first from their weights at the start of the run. The oracle may raise (e.g.
    `oracle.AwaitingLabels`); everything done so far is kept.
    `on_event(kind, cycle, detail)` is called when a cycle starts ("cycle", "start") and after each
    training step ("step", step number), checkpoint ("checkpoint", step number) and file written
    ("file", path in the run); during pretraining, ("step" and "checkpoint", -1, step number).
    `callbacks` (e.g. `summaries.TensorBoardLogger`) hears `on_train_step(step, losses)` with the step
    counted across cycles and `on_cycle_end(cycle, record, aral_model)` (aral_model None for methods
    that train no ARALModel), for the steps and cycles this process runs.
    `model` is an ARALModel (ARAL itself) or any `methods.Method` (see `methods.build_method`).
    Returns the records of all finished cycles, as in results.jsonl.
    """
    method = model if isinstance(model, Method) else Method("aral", model, LowestScore(), strategy, config.seed)
    notify = on_event or _ignore_event
    run = RunDirectory(config.output_dir)
    records = run.read_results()
    checkpoint = RunCheckpoint(method.learner, run.checkpoint_dir, run.open_run())
    position = checkpoint.restore_latest()
    _check_position(position, len(records), config, checkpoint.latest_path)
    if position is None:
        method.initialize_from_data(initialization_images(data.x_train, config.seed))
        if pretrain is not None and method.aral_model is not None:
            pretrain.run(method.aral_model, data.x_train, method.strategy, log, notify)
    for cycle in range(len(records), config.cycles + 1):
        started = time.time()
        notify("cycle", cycle, "start")
        labeled, labels = _labeled_set(cycle, method, data, initial_indices, oracle, config, run, notify)
        resumed = position if position is not None and position.cycle == cycle else None
        mean_losses, train_seconds = _train(cycle, method, checkpoint, data, labeled, labels, resumed, config,
                                            log, notify, callbacks)
        with method.evaluation():
            accuracy = evaluate(method, data.x_test, data.y_test, config.eval_batch_size, method.strategy)
        log(f"cycle {cycle}: test accuracy {accuracy:.4f} with {len(labeled)} labels")
        carried_seconds = resumed.train_seconds if resumed is not None else 0.0
        record = {
            "cycle": cycle,
            "num_labeled": len(labeled),
            "test_accuracy": accuracy,
            "seconds": round(time.time() - started + carried_seconds, 3),
            "train_steps": config.train_steps,
            "train_seconds": round(train_seconds, 3),
            "train_images_per_second": round(
                method.streams_per_step * config.batch_size * config.train_steps / train_seconds, 1),
            "losses": {name: round(value, 6) for name, value in mean_losses.items()},
        }
        run.append_result(record)
        notify("file", cycle, "results.jsonl")
        records.append(record)
        write_atomic(os.path.join(run.path, PLOT_FILE),
                     accuracy_png(run_rows(method.name, records), [method.name], f"{method.name}, seed {config.seed}"))
        if callbacks is not None:
            callbacks.on_cycle_end(cycle, record, method.aral_model)
    return records


def _check_position(position, finished_cycles, config, path):
    """The newest checkpoint must be in the first unfinished cycle or at the end of the last finished one."""
    if position is None:
        if finished_cycles:
            raise RunStateError(f"{config.output_dir}: results.jsonl lists {finished_cycles} finished cycles but "
                                "there is no checkpoint to continue from")
        return
    at_end_of_last = position.cycle == finished_cycles - 1 and position.step == config.train_steps
    if not (position.cycle == finished_cycles and position.step <= config.train_steps or at_end_of_last):
        raise RunStateError(f"{path}: is at cycle {position.cycle} step {position.step}, but results.jsonl "
                            f"lists {finished_cycles} finished cycles of {config.train_steps} steps")


def _labeled_set(cycle, method, data, initial_indices, oracle, config, run, notify):
    """Pool indices labeled for cycle `cycle` and their labels: saved ones, or the oracle's answers.

    The queries of cycle K > 0 are the selection after cycle K-1, made now with the model as it
    ended cycle K-1 unless a previous process already saved it.
    """
    if run.has(cycle, "labels.npy"):
        return run.load_array(cycle, "labeled.npy"), run.load_array(cycle, "labels.npy")
    if cycle == 0:
        previous = previous_labels = np.zeros(0, dtype=np.int64)
        chosen = initial_indices() if callable(initial_indices) else initial_indices
        queries, round_name = np.sort(np.asarray(chosen, dtype=np.int64)), "initial"
    else:
        previous = run.load_array(cycle - 1, "labeled.npy")
        previous_labels = run.load_array(cycle - 1, "labels.npy")
        if run.has(cycle - 1, "selected.npy"):
            queries = run.load_array(cycle - 1, "selected.npy")
        else:
            with method.evaluation():
                queries = method.select(data.x_train, previous, config.budget, cycle - 1, config.eval_batch_size,
                                        verbose=config.verbose)
            notify("file", cycle, run.save_array(cycle - 1, "selected.npy", queries))
        round_name = f"cycle_{cycle - 1}"
    answers = np.asarray(oracle.label(queries, round_name), dtype=np.int64)
    order = np.argsort(np.concatenate([previous, queries]), kind="stable")
    labeled = np.concatenate([previous, queries])[order]
    labels = np.concatenate([previous_labels, answers])[order]
    notify("file", cycle, run.save_array(cycle, "labeled.npy", labeled))
    notify("file", cycle, run.save_array(cycle, "labels.npy", labels))
    return labeled, labels


def _train(cycle, method, checkpoint, data, labeled, labels, resumed, config, log, notify, callbacks):
    """Trains cycle `cycle` to `config.train_steps`, from `resumed` if given; returns (mean losses, seconds).

    Checkpoints every `config.checkpoint_every` steps and after the last step; never after a
    step with a non-finite loss (the trainer raises first). A checkpoint keeps the stream state of
    the step's own batch, not that of the stream, which the trainer's input pipeline has drawn ahead.
    """
    stream = method.stream(data.x_train, labels, labeled, config.batch_size, [config.seed, cycle])
    first_step, loss_sums, carried_seconds = 0, {}, 0.0
    if resumed is None and cycle > 0 and config.restart_each_cycle:
        method.restart(config.restart_each_cycle)
    if resumed is not None:
        first_step, loss_sums, carried_seconds = resumed.step, dict(resumed.loss_sums), resumed.train_seconds
        if first_step < config.train_steps:
            stream.rng_state = resumed.stream_state
        log(f"cycle {cycle}: resuming after step {first_step} of {config.train_steps}")
    log(f"cycle {cycle}/{config.cycles}: training on {len(labeled)} labels for {config.train_steps} steps")
    started = time.time()

    def after_step(trained):
        notify("step", cycle, trained.step)
        if callbacks is not None:
            callbacks.on_train_step(cycle * config.train_steps + trained.step, trained.losses)
        if trained.step % config.checkpoint_every == 0 or trained.step == config.train_steps:
            seconds = carried_seconds + time.time() - started
            checkpoint.save(TrainingPosition(cycle=cycle, step=trained.step,
                                             stream_state=trained.stream_state,
                                             loss_sums=dict(trained.loss_sums), train_seconds=seconds))
            notify("checkpoint", cycle, trained.step)

    try:
        mean_losses = method.trainer.train(stream, config.train_steps, verbose=config.verbose,
                                           first_step=first_step, loss_sums=loss_sums, after_step=after_step)
    except FloatingPointError as error:
        raise FloatingPointError(f"cycle {cycle}: {error}") from None
    return mean_losses, carried_seconds + time.time() - started

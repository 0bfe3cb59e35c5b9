"""The label-free stage before the first query: ARAL's unsupervised game on the pool (`ARALModel.pretrain_step`).

E, G and D's trunk learn the pool's images and codes once; every cycle then starts from the
pretrained weights (they become the weights `restart` puts back), so that compute spent before
the first label is kept and a cycle's early label mistakes are not. The stage lives in a directory
of its own, laid out as a run (run_state.RunDirectory: run.json with the stage's identity, checkpoints/),
so it resumes exactly after kill -9. That directory is OUTPUT_DIR/pretrain, or an entry of a cache
shared by runs (`stage_directory`): a run with the same pool, seed, networks and settings reuses it.
"""

import hashlib
import json
import os
import time

import numpy as np
import tensorflow as tf

from aral_tf import heuristics
from aral_tf.data import initialization_images
from aral_tf.learner import NETWORKS
from aral_tf.pipeline import PoolBatches
from aral_tf.run_state import IdentityMismatch, RunCheckpoint, RunDirectory, RunStateError, TrainingPosition
from aral_tf.training import Trainer, predict_in_batches

# The stage's position in checkpoints (cycles count from 0), and the seed stream of its batches.
PRETRAIN_CYCLE = -1
PRETRAIN_STREAM = 1_000_033
RUN_SUBDIR = "pretrain"
# Bumped when the stage's training changes, so that older cache entries are not reused.
STAGE_FORMAT = 2


def stage_identity(model, pool_fingerprint, steps, batch_size, seed):
    """What determines a stage's result: the pool, the seed, the model's starting weights and the settings
    the label-free step reads, the thread counts (runs differ between them) and the TensorFlow version."""
    weights = hashlib.sha256()
    for weight in model.weights:
        weights.update(np.ascontiguousarray(weight.numpy()).tobytes())
    return {"format": STAGE_FORMAT, "pool": pool_fingerprint, "seed": seed, "steps": steps, "batch_size": batch_size,
            "settings": model.pretrain_settings(), "start_weights_sha256": weights.hexdigest(),
            "threads": thread_counts(),
            "tensorflow": tf.__version__}


def thread_counts():
    """TensorFlow's intra- and inter-op thread counts as configured (API or TF_NUM_*_THREADS; 0: TF's choice)."""
    return {kind: (getattr(tf.config.threading, f"get_{kind}_op_parallelism_threads")()
                   or int(os.environ.get(f"TF_NUM_{kind.upper()}OP_THREADS", "0") or 0), os.cpu_count())
            for kind in ("intra", "inter")}


def stage_key(identity):
    """A short hash naming the cache entry of `identity`."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


class PretrainStage:
    """`steps` label-free steps on the pool, checkpointed every `checkpoint_every` steps.

    The stage's directory is RUN/pretrain without `cache_dir`, else CACHE/<stage_key>. The cycles start
    from the pretrained weights of the `kept` networks and from the initial weights of the others.
    """

    def __init__(self, run_path, cache_dir, pool_fingerprint, steps, batch_size, seed, checkpoint_every,
                 verbose=True, kept=NETWORKS):
        self.kept = tuple(kept)
        self.run_path = run_path
        self.cache_dir = cache_dir
        self.pool_fingerprint = pool_fingerprint
        self.steps = steps
        self.batch_size = batch_size
        self.seed = seed
        self.checkpoint_every = checkpoint_every
        self.verbose = verbose

    def directory(self, identity):
        """Where the stage of `identity` lives."""
        if not self.cache_dir:
            return os.path.join(self.run_path, RUN_SUBDIR)
        return os.path.join(self.cache_dir, stage_key(identity))

    def run(self, model, images, strategy, log=print, notify=None):
        """Leaves `model` (an ARALModel, data-initialised) pretrained with those weights kept as its start
        weights and its optimizers cleared: trained here, continued from the stage's newest checkpoint, or
        restored when finished.

        `notify(kind, PRETRAIN_CYCLE, step)` hears each step ("step") and checkpoint ("checkpoint").
        """
        identity = stage_identity(model, self.pool_fingerprint, self.steps, self.batch_size, self.seed)
        initial = {name: [weight.numpy() for weight in getattr(model, name).weights]
                   for name in NETWORKS if name not in self.kept}
        stage = RunDirectory(self.directory(identity))
        with stage.locked(on_wait=lambda: log(f"pretraining: waiting for another process pretraining in {stage.path}")):
            try:
                stage_id = stage.open_run(identity)
            except IdentityMismatch as mismatch:
                raise RunStateError(f"{stage.path}: a pretraining stage of other settings ({mismatch.key} differs); "
                                    "remove it or choose another --output_dir or --pretrain_cache_dir") from None
            checkpoint = RunCheckpoint(model, stage.checkpoint_dir, stage_id)
            position = checkpoint.restore_latest()
            if position is not None and position.cycle != PRETRAIN_CYCLE:
                raise RunStateError(f"{checkpoint.latest_path}: not a checkpoint of the pretraining stage; "
                                    f"remove {stage.path} to pretrain anew")
            if position is not None and position.step == self.steps:
                log(f"pretraining: restored the finished stage ({self.steps} steps) from {stage.path}")
            else:
                log(f"pretraining: {self.steps} label-free steps on the pool of {len(images)} images in "
                    f"{stage.path}")
                self._train(model, images, strategy, checkpoint, position, log, notify or (lambda *event: None))
        # The networks not `kept` go back to their weights from before the stage, and the first cycle
        # starts as a restarted one does: fresh optimizers, so that D's moving average (what C is
        # evaluated with) and Adam's moments begin with the labels, not with the stage's.
        for name, values in initial.items():
            for weight, value in zip(getattr(model, name).weights, values):
                weight.assign(value)
        model.keep_start_weights()
        model.restart(NETWORKS)

    def _train(self, model, images, strategy, checkpoint, position, log, notify):
        config = model.network_config
        stream = PoolBatches(images, self.batch_size, config.latent_dim, config.num_classes,
                             seed=[self.seed, PRETRAIN_STREAM])
        first_step, loss_sums, carried_seconds = 0, {}, 0.0
        if position is not None:
            first_step, loss_sums, carried_seconds = position.step, dict(position.loss_sums), position.train_seconds
            stream.rng_state = position.stream_state
            log(f"pretraining: resuming after step {first_step} of {self.steps}")
        started = time.time()

        def after_step(trained):
            notify("step", PRETRAIN_CYCLE, trained.step)
            if trained.step == self.steps:
                model.keep_start_weights()
            if trained.step % self.checkpoint_every == 0 or trained.step == self.steps:
                seconds = carried_seconds + time.time() - started
                checkpoint.save(TrainingPosition(cycle=PRETRAIN_CYCLE, step=trained.step,
                                                 stream_state=trained.stream_state,
                                                 loss_sums=dict(trained.loss_sums), train_seconds=float(seconds)))
                notify("checkpoint", PRETRAIN_CYCLE, trained.step)

        trainer = Trainer(model, strategy, step=model.pretrain_step)
        try:
            trainer.train(stream, self.steps, verbose=self.verbose, first_step=first_step, loss_sums=loss_sums,
                          after_step=after_step)
        except FloatingPointError as error:
            raise FloatingPointError(f"pretraining: {error}") from None


class InitialSelection:
    """The label-blind initial set (`--initial_selection=typiclust`): TypiClust on D's trunk features of a
    pretrained ARAL model, called by the loop when cycle 0's labels are not saved yet.

    `model` is the run's own ARAL model, which the loop has already pretrained, or (`own_stage`) a model
    kept for this purpose only, data-initialised and taken through `stage` here.
    """

    def __init__(self, model, own_stage, stage, images, count, seed, batch_size, strategy, verbose=False, log=print):
        self.model = model
        self.own_stage = own_stage
        self.stage = stage
        self.images = images
        self.count = count
        self.seed = seed
        self.batch_size = batch_size
        self.strategy = strategy
        self.verbose = verbose
        self.log = log

    def __call__(self):
        if self.own_stage:
            self.model.initialize_from_data(initialization_images(self.images, self.seed))
            if self.stage is not None:
                self.stage.run(self.model, self.images, self.strategy, self.log)
        with self.model.averaged():
            features = predict_in_batches(lambda batch: self.model.acquisition_outputs(batch)["features"], self.images,
                                          self.batch_size, verbose=self.verbose, unit_name="pool image",
                                          strategy=self.strategy)
        return heuristics.initial_selection(np.asarray(features), self.count, self.seed)

"""The contract the active-learning loop drives, kept by ARAL (`model.ARALModel`) and every baseline.

A learner trains on one batch at a time (`train_step`), classifies (`classify`), holds the moving
average of its classifier's weights inside `averaged()`, gives what the acquisition functions read
(`acquisition_outputs`), and can put networks back to their start-of-run weights (`restart`).
Networks are named by their role in ARAL (`NETWORKS`): "discriminator" is every classifier and GAN
discriminator, "generator" G and VAAL's decoder, "encoder" and "sampler" E and S (or VAAL's).
"""

import contextlib

import keras

from aral_tf.optimizers import AveragingAdam, clear_state

NETWORKS = ("encoder", "generator", "discriminator", "sampler")


def make_adam(learning_rate, variables, beta_1, average_momentum=0.0):
    """Adam for `variables`, built; with `average_momentum` > 0 it keeps their moving average.

    Under a float16 mixed-precision policy it is wrapped in a LossScaleOptimizer; every learner takes
    its gradients of `optimizer.scale_loss(loss)`, computed inside the tape.
    """
    optimizer = AveragingAdam(learning_rate, beta_1=beta_1, use_ema=average_momentum > 0,
                              ema_momentum=average_momentum if average_momentum > 0 else 0.99)
    if keras.mixed_precision.global_policy().compute_dtype == "float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(variables)
    return optimizer


@contextlib.contextmanager
def averaged_weights(optimizer, variables):
    """Within this context `variables` hold `optimizer`'s moving average; training weights return on exit.

    Without an average (momentum 0) the weights stay as trained.
    """
    saved = [variable.numpy() for variable in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)


def weights_of(networks):
    """Every weight (trainable or not) of `networks`, in order."""
    return [weight for network in networks for weight in network.weights]


class Learner:
    """Base of ARAL and the baselines (see the module docstring): `averaged()` and `restart(names)`.

    A learner also gives:
    - `restartable()`: {network name: (networks, optimizers)} it trains itself, and `start_weights_of(name)`,
      the kept start-of-run copies of those weights, aligned with `weights_of`;
    - `averaging()`: (optimizer, variables) of the classifier whose moving average evaluation uses;
    - `train_step(batch)`: one step on a dict of arrays, returning {loss name: scalar tensor};
    - `classify(images)`: class logits for uint8 images (inference mode);
    - `acquisition_outputs(images)`: {key: tensor}, the keys of `acquisition_keys`;
    - `initialize_from_data(images)`: data-dependent initialisation from pool images (no labels).
    """

    # Image streams of `batch_size` one training step reads (labeled, unlabeled, generated).
    streams = 3
    # Trains on labeled batches only (`pipeline.LabeledBatches`), not on the pool's unlabeled images.
    labeled_only = False
    # The keys of `acquisition_outputs`.
    acquisition_keys = ()

    def restartable(self):
        """{network name: (networks, optimizers)} of the networks this learner itself trains."""
        return {}

    def sub_learners(self):
        """Learners this one holds and trains (restarted with it)."""
        return []

    def averaged(self):
        """Context in which the classifier holds the moving average of its weights."""
        return averaged_weights(*self.averaging())

    def restart(self, names):
        """Puts the networks of `names` (from NETWORKS) back to their start-of-run weights and clears the
        state of their optimizers; names this learner has no network for are passed over."""
        unknown = sorted(set(names) - set(NETWORKS))
        if unknown:
            raise ValueError(f"unknown networks {unknown}; choose from {list(NETWORKS)}")
        restartable = self.restartable()
        optimizers = {}
        for name in names:
            if name in restartable:
                networks, network_optimizers = restartable[name]
                for weight, copy in zip(weights_of(networks), self.start_weights_of(name)):
                    weight.assign(copy)
                optimizers.update((id(optimizer), optimizer) for optimizer in network_optimizers)
        for optimizer in optimizers.values():
            clear_state(optimizer)
        for learner in self.sub_learners():
            learner.restart(names)





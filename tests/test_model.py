"""ARALModel: which networks each update of Alg. 1 changes, and strategy invariance of train_step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from aral_tf.losses import LossWeights
from aral_tf.model import ARALModel, to_model_range
from aral_tf.pipeline import PoolBatches
from aral_tf.training import Trainer
from tests.helpers import tiny_batch, tiny_config, tiny_images, two_cpu_strategy

NETWORKS = ("encoder", "generator", "discriminator", "sampler")


def snapshot(model):
    return {name: [v.numpy().copy() for v in getattr(model, name).trainable_variables] for name in NETWORKS}


def changed_networks(before, after):
    return {name for name in NETWORKS
            if any(not np.array_equal(old, new) for old, new in zip(before[name], after[name]))}


class GradientFlowTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(1)
        self.model = ARALModel(tiny_config())
        self.inputs = self.model.prepare_batch(tiny_batch(self.model.network_config))

    def test_encoder_generator_update_changes_only_e_and_g(self):
        before = snapshot(self.model)
        self.model.update_encoder_generator(self.inputs)
        self.assertEqual(changed_networks(before, snapshot(self.model)), {"encoder", "generator"})

    def test_discriminator_update_changes_only_d(self):
        before = snapshot(self.model)
        self.model.update_discriminator(self.inputs)
        self.assertEqual(changed_networks(before, snapshot(self.model)), {"discriminator"})

    def test_sampler_update_changes_only_s(self):
        _, latent_means = self.model.update_discriminator(self.inputs)
        before = snapshot(self.model)
        self.model.update_sampler(self.inputs, latent_means)
        self.assertEqual(changed_networks(before, snapshot(self.model)), {"sampler"})

    def test_every_trainable_variable_receives_a_gradient_in_train_step(self):
        before = snapshot(self.model)
        self.model.train_step(tiny_batch(self.model.network_config))
        after = snapshot(self.model)
        for name in NETWORKS:
            for index, (old, new) in enumerate(zip(before[name], after[name])):
                self.assertFalse(np.array_equal(old, new), f"{name} variable {index} did not change")

    def test_train_step_returns_finite_losses(self):
        values = self.model.train_step(tiny_batch(self.model.network_config))
        self.assertContainsSubset({"loss_encoder_generator", "loss_discriminator", "loss_sampler"}, values)
        for name, value in values.items():
            self.assertTrue(np.isfinite(value.numpy()), name)

    @staticmethod
    def model_with_class_logits_raised_by(shift):
        """A fresh seeded model whose every class logit is raised by `shift` (D surer that x is real)."""
        keras.utils.set_random_seed(1)
        model = ARALModel(tiny_config())
        model.discriminator.classifier.bias.assign_add(tf.fill([3], shift))
        return model

    def test_encoder_bigan_loss_reads_only_the_pair_term(self):
        """Eq. 10 for E: raising every class logit (D surer that x is real) leaves E's loss unchanged."""
        results = []
        for shift in (0.0, 50.0):
            model = self.model_with_class_logits_raised_by(shift)
            results.append(model.update_encoder_generator(model.prepare_batch(tiny_batch(model.network_config))))
        self.assertAllClose(results[0]["encoder_gan"], results[1]["encoder_gan"])
        self.assertNotAllClose(results[0]["generator_gan"], results[1]["generator_gan"])

    def test_each_real_fake_head_plays_its_own_game(self):
        """D's update of the pair head does not depend on how sure the class head is."""
        results = []
        for shift in (0.0, 50.0):
            model = self.model_with_class_logits_raised_by(shift)
            model.discriminator_optimizer = keras.optimizers.SGD(1.0)  # The update is the gradient (Adam's first
            model.discriminator_optimizer.build(model.discriminator.trainable_variables)  # step is not).
            model.update_discriminator(model.prepare_batch(tiny_batch(model.network_config)))
            results.append([v.numpy() for v in model.discriminator.pair_head.trainable_variables])
        for unshifted, shifted in zip(*results):
            self.assertAllClose(unshifted, shifted)

    def test_pair_game_does_not_reach_the_trunk(self):
        """D's update of its trunk is the same whatever the pair head's weights (its input is held fixed)."""
        results = []
        for pair_scale in (1.0, 5.0):
            keras.utils.set_random_seed(1)
            model = ARALModel(tiny_config())
            for variable in model.discriminator.pair_head.trainable_variables:
                variable.assign(variable * pair_scale)
            model.discriminator_optimizer = keras.optimizers.SGD(1.0)
            model.discriminator_optimizer.build(model.discriminator.trainable_variables)
            model.update_discriminator(model.prepare_batch(tiny_batch(model.network_config)))
            results.append([v.numpy() for v in model.discriminator.trunk.trainable_variables]
                           + [v.numpy() for v in model.discriminator.classifier.trainable_variables])
        for first, second in zip(*results):
            self.assertAllClose(first, second)

    def test_generated_images_train_the_classifier(self):
        """Eq. 9's second term: D's gradient depends on the generated images' conditioning labels."""
        batch = tiny_batch(self.model.network_config)
        flipped = dict(batch, prior_labels=(batch["prior_labels"] + 1) % 3)
        results = []
        for candidate in (batch, flipped):
            keras.utils.set_random_seed(1)
            model = ARALModel(tiny_config())
            model.update_discriminator(model.prepare_batch(candidate))
            results.append(model.discriminator.classifier.get_weights()[0])
        self.assertNotAllClose(results[0], results[1])


class PretrainStepTest(tf.test.TestCase):

    def test_pretrain_step_trains_e_g_and_d_not_s_and_reads_no_labels(self):
        keras.utils.set_random_seed(1)
        model = ARALModel(tiny_config())
        stream = PoolBatches(tiny_images(20, model.network_config.image_shape), 4, model.network_config.latent_dim,
                             model.network_config.num_classes, seed=0)
        batch = stream.next()
        self.assertNotIn("labels", batch)
        before = snapshot(model)
        values = model.pretrain_step(batch)
        self.assertEqual(changed_networks(before, snapshot(model)), {"encoder", "generator", "discriminator"})
        self.assertNotIn("loss_sampler", values)
        self.assertEqual(float(values["classification"]), 0.0)
        for name, value in values.items():
            self.assertTrue(np.isfinite(float(value)), name)

    def test_pretrain_step_is_unconditional(self):
        """G's class input gets the uniform vector: the prior labels drawn for the batch change nothing."""
        results = []
        for shift in (0, 1):
            keras.utils.set_random_seed(1)
            model = ARALModel(tiny_config())
            batch = PoolBatches(tiny_images(20, model.network_config.image_shape), 4, model.network_config.latent_dim,
                                model.network_config.num_classes, seed=0).next()
            model.pretrain_step(dict(batch, prior_labels=(batch["prior_labels"] + shift) % 3))
            results.append([weight.numpy() for weight in model.weights])
        for first, second in zip(*results):
            self.assertAllClose(first, second)

    def test_features_are_the_trunk_features(self):
        keras.utils.set_random_seed(1)
        model = ARALModel(tiny_config())
        images = tiny_images(3, model.network_config.image_shape)
        outputs = model.acquisition_outputs(images)
        features, _ = model.discriminator(to_model_range(images), training=False)
        self.assertAllClose(outputs["features"], features)


class SamplerConditioningTest(tf.test.TestCase):

    def sampler_codes(self, reads_prediction, labels):
        keras.utils.set_random_seed(1)
        model = ARALModel(tiny_config(), LossWeights(sampler_reads_prediction=reads_prediction))
        batch = dict(tiny_batch(model.network_config), labels=labels)
        _, codes = model.update_discriminator(model.prepare_batch(batch))
        return codes.numpy()

    def test_codes_s_reads_do_not_depend_on_the_labels_when_encoded_on_predictions(self):
        first, second = np.array([0, 1, 2, 0]), np.array([1, 2, 0, 1])
        self.assertAllClose(self.sampler_codes(True, first), self.sampler_codes(True, second))
        self.assertNotAllClose(self.sampler_codes(False, first), self.sampler_codes(False, second))


class AveragedDiscriminatorTest(tf.test.TestCase):

    def test_swaps_in_the_average_and_restores_training_weights(self):
        keras.utils.set_random_seed(2)
        model = ARALModel(tiny_config())
        for seed in range(3):
            model.train_step(tiny_batch(model.network_config, seed=seed))
        training_weights = [v.numpy().copy() for v in model.discriminator.trainable_variables]
        averages = model.discriminator_optimizer._model_variables_moving_average  # pylint: disable=protected-access
        with model.averaged():
            for variable, average in zip(model.discriminator.trainable_variables, averages):
                self.assertAllClose(variable, average)
            self.assertNotAllClose(model.discriminator.trainable_variables[0], training_weights[0])
        for variable, weight in zip(model.discriminator.trainable_variables, training_weights):
            self.assertAllEqual(variable.numpy(), weight)


class RestartTest(tf.test.TestCase):

    def test_restart_puts_back_the_start_weights_and_clears_the_optimizer(self):
        keras.utils.set_random_seed(4)
        model = ARALModel(tiny_config())
        model.initialize_from_data(tiny_images(6))
        start = snapshot(model)
        start_discriminator = model.discriminator.get_weights()
        for seed in range(2):
            model.train_step(tiny_batch(model.network_config, seed=seed))
        trained = snapshot(model)
        model.restart(("discriminator", "generator"))
        now = snapshot(model)
        self.assertEqual(changed_networks(start, now), {"encoder", "sampler"})
        self.assertEqual(changed_networks(trained, now), {"discriminator", "generator"})
        for optimizer in (model.discriminator_optimizer, model.encoder_generator_optimizer):
            self.assertEqual(int(optimizer.iterations), 0)
            self.assertAllClose(optimizer.learning_rate, model.optimizer_config.discriminator_lr
                                if optimizer is model.discriminator_optimizer
                                else model.optimizer_config.encoder_generator_lr)
        self.assertEqual(int(model.sampler_optimizer.iterations), 2)
        # A restarted D takes the same first update as a fresh one from the same start.
        model.update_discriminator(model.prepare_batch(tiny_batch(model.network_config, seed=9)))
        fresh = ARALModel(tiny_config())
        fresh.set_weights(model.get_weights())
        fresh.discriminator.set_weights(start_discriminator)
        fresh.update_discriminator(fresh.prepare_batch(tiny_batch(model.network_config, seed=9)))
        self.assertAllClose(fresh.discriminator.get_weights(), model.discriminator.get_weights())


class MixedPrecisionTest(tf.test.TestCase):

    def tearDown(self):
        keras.mixed_precision.set_global_policy("float32")
        super().tearDown()

    @pytest.mark.slow
    def test_float16_step_scales_losses_and_keeps_float32_weights(self):
        keras.mixed_precision.set_global_policy("mixed_float16")
        keras.utils.set_random_seed(5)
        model = ARALModel(tiny_config(noise=0.3))
        self.assertIsInstance(model.discriminator_optimizer, keras.optimizers.LossScaleOptimizer)
        model.initialize_from_data(tiny_images(20))
        values = Trainer(model, tf.distribute.get_strategy()).train_step(tiny_batch(model.network_config))
        for name, value in values.items():
            self.assertTrue(np.isfinite(value), name)
        self.assertEqual({variable.dtype for variable in model.trainable_variables}, {"float32"})
        self.assertEqual(model.acquisition_outputs(tiny_images(3))["score"].dtype, tf.float32)
        with model.averaged():
            self.assertEqual(model.classify(tiny_images(3)).dtype, tf.float32)


class StrategyInvarianceTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_mirrored_step_equals_default_step(self):
        config = tiny_config()
        batch = tiny_batch(config, batch_size=8)
        keras.utils.set_random_seed(3)
        # Non-default weights so that class-conditional feature matching (all-reduced) is in the update.
        weights = LossWeights(class_feature_matching=1.0, generator_gan=0.5, generated_cls=0.3)
        reference = ARALModel(config, weights)
        initial = reference.get_weights()
        expected_losses = {k: float(v) for k, v in reference.train_step(batch).items()}

        strategy = two_cpu_strategy()
        self.assertEqual(strategy.num_replicas_in_sync, 2)
        with strategy.scope():
            mirrored = ARALModel(config, weights)
        mirrored.set_weights(initial)
        losses = Trainer(mirrored, strategy).train_step(batch)
        for name, value in expected_losses.items():
            self.assertAllClose(losses[name], value, rtol=1e-4, atol=1e-5, msg=name)
        for expected, actual, variable in zip(reference.get_weights(), mirrored.get_weights(), reference.weights):
            self.assertAllClose(actual, expected, rtol=1e-4, atol=1e-5, msg=variable.path)


if __name__ == "__main__":
    tf.test.main()

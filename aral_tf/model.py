"""The co-trained ARAL model and its training step (paper Alg. 1, lines 8-19)."""

import dataclasses

import keras
import tensorflow as tf

from aral_tf import losses
from aral_tf.data import to_model_range
from aral_tf.learner import NETWORKS, Learner, make_adam
from aral_tf.networks import NetworkConfig, build_networks

BATCH_KEYS = ("labeled_images", "labels", "unlabeled_images", "prior_latent", "prior_labels",
              "labeled_noise", "unlabeled_noise")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam settings per player (paper Sec. 4.1: 1e-3 for E/G, 3e-3 for D and S on MNIST)."""

    encoder_generator_lr: float = 1e-3
    discriminator_lr: float = 3e-3
    sampler_lr: float = 3e-3
    # The baselines' classifiers that play no GAN game (`baselines.SupervisedClassifier`); not in the paper.
    classifier_lr: float = 1e-3
    beta_1: float = 0.5
    discriminator_average_momentum: float = 0.999


@keras.saving.register_keras_serializable(package="aral_tf")
class ARALModel(keras.Model, Learner):
    """E, G, D and S with one Adam optimizer per player (E and G share one); a `learner.Learner`.

    `train_step(batch)` runs Alg. 1's three updates in order: E and G descend
    Eq. 11, then D descends Eq. 12 (seeing the updated E and G), then S
    descends Eq. 13. A batch is a dict with `BATCH_KEYS`: uint8 labeled and
    unlabeled images, the labeled images' labels, and the random draws of the
    step (prior latents and labels for G, reparameterisation noise for E), so
    that every replica split of a global batch sees the same randomness.
    Create it inside the distribution strategy's scope.
    """

    def __init__(self, network_config, loss_weights=losses.LossWeights(),
                 optimizer_config=OptimizerConfig(), **kwargs):
        super().__init__(**kwargs)
        self.network_config = network_config
        self.loss_weights = loss_weights
        self.optimizer_config = optimizer_config
        self.encoder, self.generator, self.discriminator, self.sampler = build_networks(network_config)
        beta_1 = optimizer_config.beta_1
        self.encoder_generator_optimizer = make_adam(optimizer_config.encoder_generator_lr,
                                                     self.encoder_generator_variables, beta_1)
        self.discriminator_optimizer = make_adam(optimizer_config.discriminator_lr,
                                                 self.discriminator.trainable_variables, beta_1,
                                                 average_momentum=optimizer_config.discriminator_average_momentum)
        self.sampler_optimizer = make_adam(optimizer_config.sampler_lr, self.sampler.trainable_variables, beta_1)
        # Each network's weights at the start of the run, which `restart` puts back.
        self._start_weights = {
            name: [self.add_weight(shape=weight.shape, dtype=weight.dtype, initializer="zeros", trainable=False,
                                   name=f"start_{name}_{index}")
                   for index, weight in enumerate(getattr(self, name).weights)]
            for name in NETWORKS}
        self.keep_start_weights()

    def get_config(self):
        """The constructor's configs as plain dicts (for `model.save("*.keras")`)."""
        return {**super().get_config(), "network_config": dataclasses.asdict(self.network_config),
                "loss_weights": dataclasses.asdict(self.loss_weights),
                "optimizer_config": dataclasses.asdict(self.optimizer_config)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        network = config.pop("network_config")
        network_config = NetworkConfig(**{**network, "image_shape": tuple(network["image_shape"])})
        return cls(network_config, losses.LossWeights(**config.pop("loss_weights")),
                   OptimizerConfig(**config.pop("optimizer_config")), **config)

    def pretrain_settings(self):
        """What `pretrain_step` reads of the model's configs (what identifies a pretraining stage)."""
        unused = ("cls", "generated_cls", "generated_cls_confidence", "sampler_reads_prediction")
        return {"network_config": dataclasses.asdict(self.network_config),
                "loss_weights": {name: value for name, value in dataclasses.asdict(self.loss_weights).items()
                                 if name not in unused},
                "optimizer_config": {name: value for name, value in dataclasses.asdict(self.optimizer_config).items()
                                     if name not in ("sampler_lr", "classifier_lr")}}

    def initialize_from_data(self, images):
        """Data-dependent initialisation of D's weight-normalised layers on uint8 pool images (no labels)."""
        self.discriminator.initialize_from_data(to_model_range(images))
        self.keep_start_weights()

    def keep_start_weights(self):
        """Makes the current weights those `restart` puts back (after initialisation and pretraining)."""
        for name, copies in self._start_weights.items():
            for copy, weight in zip(copies, getattr(self, name).weights):
                copy.assign(weight)

    def start_weights_of(self, name):
        return self._start_weights[name]

    def restartable(self):
        """E and G share one optimizer, so restarting either clears it for both."""
        return {"encoder": ([self.encoder], [self.encoder_generator_optimizer]),
                "generator": ([self.generator], [self.encoder_generator_optimizer]),
                "discriminator": ([self.discriminator], [self.discriminator_optimizer]),
                "sampler": ([self.sampler], [self.sampler_optimizer])}

    def averaging(self):
        """D's average: evaluation and acquisition use it (Polyak averaging, as Salimans et al. [27]
        evaluate their classifier), since single GAN iterates oscillate."""
        return self.discriminator_optimizer, self.discriminator.trainable_variables

    @property
    def encoder_generator_variables(self):
        return self.encoder.trainable_variables + self.generator.trainable_variables

    @property
    def num_classes(self):
        return self.network_config.num_classes

    def _encode(self, images, labels, noise, training):
        """q(z | x, y): returns (mu, log_var, z = mu + sigma * noise)."""
        mu, log_var = self.encoder(images, labels, training=training)
        return mu, log_var, mu + tf.exp(0.5 * log_var) * noise

    def prepare_batch(self, batch):
        """Model-range images, one-hot labels and the step's random draws from a raw batch."""
        labels = tf.cast(batch["labels"], tf.int32)
        prior_labels = tf.cast(batch["prior_labels"], tf.int32)
        return {
            "real": to_model_range(tf.concat([batch["labeled_images"], batch["unlabeled_images"]], axis=0)),
            "num_labeled": tf.shape(batch["labeled_images"])[0],
            "labels": labels,
            "labels_one_hot": tf.one_hot(labels, self.num_classes),
            "prior_latent": tf.cast(batch["prior_latent"], tf.float32),
            "prior_labels": prior_labels,
            "prior_one_hot": tf.one_hot(prior_labels, self.num_classes),
            "noise": tf.cast(tf.concat([batch["labeled_noise"], batch["unlabeled_noise"]], axis=0), tf.float32),
        }

    def train_step(self, batch):
        """One iteration of Alg. 1 (lines 8-19); returns this replica's loss values."""
        inputs = self.prepare_batch(batch)
        encoder_generator_losses = self.update_encoder_generator(inputs)
        discriminator_losses, latent_means = self.update_discriminator(inputs)
        sampler_losses = self.update_sampler(inputs, latent_means)
        return {**encoder_generator_losses, **discriminator_losses, **sampler_losses}

    def pretrain_step(self, batch):
        """One label-free step (the pretraining stage, before the first query): Alg. 1 lines 10-16 played
        unconditionally, without Eq. 9 and without S.

        Every image, real or generated, is conditioned on the uniform class vector, G plays against
        LSE(l) alone and class feature matching is off: a class-conditional game without labels would bind
        G's and E's class inputs to whatever clusters D finds, a mapping the first labels then have to
        undo (docs/design.md, "The pretraining stage"). `batch` has the keys of `BATCH_KEYS` but "labels":
        both image streams are pool draws, so every loss keeps the scale it has in `train_step`.
        """
        inputs = self.prepare_batch({**batch, "labels": tf.zeros(tf.shape(batch["labeled_images"])[:1], tf.int32)})
        inputs["prior_one_hot"] = self._uniform_classes(inputs["prior_one_hot"])
        encoder_generator_losses = self.update_encoder_generator(inputs, supervised=False)
        discriminator_losses, _ = self.update_discriminator(inputs, supervised=False)
        return {**encoder_generator_losses, **discriminator_losses}

    @staticmethod
    def _uniform_classes(like):
        """The uniform class vector 1/K in the shape of `like` ([batch, K])."""
        return tf.ones_like(like) / tf.cast(tf.shape(like)[-1], like.dtype)

    def _conditioning(self, inputs, real_logits, supervised):
        """y of Eqs. 5, 8 and 10 for the real images: labeled ones' labels and C's softmax (held fixed) for
        the others; the uniform class vector for all when not `supervised`."""
        if not supervised:
            return self._uniform_classes(real_logits)
        inferred = tf.stop_gradient(tf.nn.softmax(real_logits[inputs["num_labeled"]:]))
        return tf.concat([inputs["labels_one_hot"], inferred], axis=0)

    def _sampler_input(self, real, latent_means, real_logits, num_labeled):
        """The codes S reads: E's means, with labeled images encoded on C's prediction instead of their
        label when `loss_weights.sampler_reads_prediction` (so that the label's format cannot tell S which
        set an image is in, and S reads in training what it reads when querying)."""
        if not self.loss_weights.sampler_reads_prediction:
            return latent_means
        predicted, _ = self.encoder(real[:num_labeled], tf.stop_gradient(tf.nn.softmax(real_logits[:num_labeled])),
                                    training=True)
        return tf.concat([predicted, latent_means[num_labeled:]], axis=0)

    def update_encoder_generator(self, inputs, supervised=True):
        """Alg. 1 lines 10-12: E and G descend Eq. 11.

        G plays Eq. 7 against each of D's real/fake heads (the class head and the
        pair head, see `Discriminator`); E plays Eq. 10 against the pair head, the
        only one its codes reach. Not `supervised`: no image is conditioned on a class, G plays against
        LSE(l) alone and class feature matching is off.
        """
        real, num_labeled = inputs["real"], inputs["num_labeled"]
        num_real = tf.shape(real)[0]
        weights = self.loss_weights
        with tf.GradientTape() as tape:
            real_features, real_logits = self.discriminator(real, training=True)
            conditioning = self._conditioning(inputs, real_logits, supervised)
            mu, log_var, latent = self._encode(real, conditioning, inputs["noise"], training=True)
            decoded = self.generator(tf.concat([latent, inputs["prior_latent"]], axis=0),
                                     tf.concat([conditioning, inputs["prior_one_hot"]], axis=0), training=True)
            reconstructions, generated = decoded[:num_real], decoded[num_real:]
            generated_features, generated_logits = self.discriminator(generated, training=True)
            nll = losses.reconstruction_nll(real, reconstructions)
            kl = losses.kl_divergence(mu, log_var)
            sampler_input = self._sampler_input(real, mu, real_logits, num_labeled) if supervised else mu
            sampler_logits = self.sampler(sampler_input, training=True)
            acquisition = losses.acquisition_encoder_generator_loss(
                nll[:num_labeled], kl[:num_labeled], nll[num_labeled:], kl[num_labeled:],
                sampler_logits[:num_labeled], sampler_logits[num_labeled:], weights)
            real_pair = self.discriminator.pair_head_logit(real_features, latent)
            encoder_gan = losses.encoder_bigan_loss(real_pair[:num_labeled], real_pair[num_labeled:])
            generator_gan = (
                losses.generator_gan_loss(self.discriminator.class_head_logit(
                    generated_logits, inputs["prior_one_hot"], train_discriminator=not supervised))
                + losses.pair_generator_loss(self.discriminator.pair_head_logit(generated_features,
                                                                                inputs["prior_latent"])))
            feature_matching = losses.feature_matching_loss(
                tf.stop_gradient(real_features[num_labeled:]), generated_features)
            class_feature_matching = tf.constant(0.0)  # Not computed (nor all-reduced) at weight 0.
            if weights.class_feature_matching and supervised:
                class_feature_matching = losses.class_feature_matching_loss(
                    tf.stop_gradient(real_features), conditioning, generated_features, inputs["prior_one_hot"])
            loss = losses.encoder_generator_loss(acquisition, encoder_gan, generator_gan, feature_matching,
                                                 class_feature_matching, weights)
            scaled_loss = self.encoder_generator_optimizer.scale_loss(loss)
        variables = self.encoder_generator_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.encoder_generator_optimizer.apply_gradients(zip(gradients, variables))
        return {"loss_encoder_generator": loss, "acquisition": acquisition, "encoder_gan": encoder_gan,
                "generator_gan": generator_gan, "feature_matching": feature_matching,
                "class_feature_matching": class_feature_matching}

    def update_discriminator(self, inputs, supervised=True):
        """Alg. 1 lines 14-16: D descends Eq. 12, seeing the current E and G.

        Each real/fake head of D plays Eq. 8 on its own; L_D^gan is their sum.
        The class head is trained as LSE(l), the pair head on D's features held fixed.
        Not `supervised`: Eq. 8 alone, every image conditioned on the uniform class vector.

        Returns the losses and the codes S trains on next (`_sampler_input`).
        """
        real, num_labeled = inputs["real"], inputs["num_labeled"]
        num_real = tf.shape(real)[0]
        generated = self.generator(inputs["prior_latent"], inputs["prior_one_hot"], training=True)
        with tf.GradientTape() as tape:
            features, logits = self.discriminator(tf.concat([real, generated], axis=0), training=True)
            conditioning = self._conditioning(inputs, logits[:num_real], supervised)
            mu, _, latent = self._encode(real, conditioning, inputs["noise"], training=True)
            class_head = self.discriminator.class_head_logit(
                logits, tf.concat([conditioning, inputs["prior_one_hot"]], axis=0), train_discriminator=True)
            # The pair game trains the pair head, not the trunk C reads (see `networks.Discriminator`).
            pair_head = self.discriminator.pair_head_logit(
                tf.stop_gradient(features), tf.stop_gradient(tf.concat([latent, inputs["prior_latent"]], axis=0)))
            gan = (losses.discriminator_gan_loss(class_head[:num_labeled], class_head[num_labeled:num_real],
                                                 class_head[num_real:])
                   + losses.pair_discriminator_loss(pair_head[:num_labeled], pair_head[num_labeled:num_real],
                                                    pair_head[num_real:]))
            classification = tf.constant(0.0)
            if supervised:
                classification = losses.discriminator_classification_loss(
                    logits[:num_labeled], inputs["labels"], logits[num_real:], inputs["prior_labels"],
                    generated_weight=self.loss_weights.generated_cls,
                    confidence=self.loss_weights.generated_cls_confidence)
            loss = losses.discriminator_loss(gan, classification, self.loss_weights)
            scaled_loss = self.discriminator_optimizer.scale_loss(loss)
        variables = self.discriminator.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.discriminator_optimizer.apply_gradients(zip(gradients, variables))
        sampler_input = self._sampler_input(real, mu, logits[:num_real], num_labeled) if supervised else mu
        return {"loss_discriminator": loss, "discriminator_gan": gan,
                "classification": classification}, tf.stop_gradient(sampler_input)

    def update_sampler(self, inputs, latent_means):
        """Alg. 1 lines 17-19: S descends Eq. 13 on the latent means of labeled and unlabeled images."""
        num_labeled = inputs["num_labeled"]
        with tf.GradientTape() as tape:
            sampler_logits = self.sampler(latent_means, training=True)
            loss = losses.sampler_loss(sampler_logits[:num_labeled], sampler_logits[num_labeled:])
            scaled_loss = self.sampler_optimizer.scale_loss(loss)
        variables = self.sampler.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.sampler_optimizer.apply_gradients(zip(gradients, variables))
        return {"loss_sampler": loss}

    def classify(self, images):
        """Class logits C(x) for uint8 images (inference mode)."""
        _, logits = self.discriminator(to_model_range(images), training=False)
        return logits

    acquisition_keys = ("score", "latent", "logits", "features")

    def acquisition_outputs(self, images):
        """For uint8 images: `score` S(E(x, C(x))) in (0, 1), the probability of "labeled" (lower means
        query first); `latent` E's mean; `logits` C's class logits; `features` D's trunk features D~(x)."""
        model_input = to_model_range(images)
        features, logits = self.discriminator(model_input, training=False)
        mu, _ = self.encoder(model_input, tf.nn.softmax(logits), training=False)
        return {"score": tf.sigmoid(self.sampler(mu, training=False)), "latent": mu, "logits": logits,
                "features": features}

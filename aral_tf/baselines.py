"""Learners of the baselines and ablations the comparison runs beside ARAL (paper Sec. 4.3, Figs. 3-5).

Each keeps the contract of `learner.Learner`, as ARAL does, and gives the acquisition functions of
`aral_tf.heuristics` what they read (`acquisition_outputs`, and `mc_probabilities` for BALD). They
reuse ARAL's networks:
the task classifier is always D's trunk and class head (`networks.Discriminator`), with dropout on the
trunk's features before the head (the MC dropout of BALD; `NetworkConfig.dropout_rate`).

- `SupervisedClassifier`: C trained by cross-entropy on labeled images only (random, entropy, BALD,
  core-set, full), optionally also on generated images with their conditioning labels.
- `VAAL`: Sinha et al.'s beta-VAE and latent discriminator (paper ref. [32]), unconditional.
- `SemiSupervisedGAN`: ARAL without E and S: a class-conditional G and Improved-GAN's D, whose
  classifier learns from labeled, unlabeled (real/fake) and generated (Eq. 9) images.
- `VAALWithClassifier`, `VAALWithGANClassifier`: the VAAL baseline and ARAL without co-training.
"""

import keras
import tensorflow as tf

from aral_tf import losses
from aral_tf.data import to_model_range
from aral_tf.learner import Learner, make_adam, weights_of
from aral_tf.networks import Discriminator, Encoder, Generator, Sampler


def _cross_entropy(logits, labels):
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)
    return tf.nn.compute_average_loss(per_example)


class BaselineLearner(tf.Module, Learner):
    """A baseline's learner: checkpointable (tf.train.Checkpoint tracks its attributes), and `variables`
    lists those of every Keras network, optimizer and learner it holds, with its start-of-run weights."""

    def keep_start_weights(self):
        """Copies the current weights of the restartable networks (and those of the learners it holds)."""
        if not hasattr(self, "start_weights"):
            self.start_weights = {
                name: [tf.Variable(weight, trainable=False, name=f"start_{name}_{index}")
                       for index, weight in enumerate(weights_of(networks))]
                for name, (networks, _) in self.restartable().items()}
        for name, (networks, _) in self.restartable().items():
            for copy, weight in zip(self.start_weights[name], weights_of(networks)):
                copy.assign(weight)
        for learner in self.sub_learners():
            learner.keep_start_weights()

    def start_weights_of(self, name):
        return self.start_weights[name]

    def sub_learners(self):
        return [value for value in vars(self).values() if isinstance(value, BaselineLearner)]

    @property
    def variables(self):
        found, seen = [], set()
        held = [value.variables for value in vars(self).values()
                if isinstance(value, (keras.layers.Layer, keras.optimizers.Optimizer, BaselineLearner))]
        held += list(getattr(self, "start_weights", {}).values())
        for variables in held:
            for variable in variables:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    found.append(variable)
        return found


class ClassifierNetwork(BaselineLearner):
    """D's trunk and class head with dropout on the features between them."""

    def __init__(self, network_config, name):
        super().__init__()
        self.network_config = network_config
        self.network = Discriminator(network_config, name=name)
        self.network(tf.zeros((1,) + tuple(network_config.image_shape)))
        self.dropout = keras.layers.Dropout(network_config.dropout_rate)

    @property
    def trainable_variables(self):
        """Trunk and class head only (the real/fake head of ARAL's D is not used here)."""
        return self.network.trunk.trainable_variables + self.network.classifier.trainable_variables

    def features_and_logits(self, model_images, training):
        features = self.network.trunk(model_images, training=training)
        return features, self.network.classifier(self.dropout(features, training=training))

    def initialize_from_data(self, images):
        """D's data-dependent initialisation, which becomes the start-of-run weights."""
        self.network.initialize_from_data(to_model_range(images))
        self.keep_start_weights()

    acquisition_keys = ("logits", "features")

    def classify(self, images):
        """Class logits for uint8 images (inference mode)."""
        return self.features_and_logits(to_model_range(images), training=False)[1]

    def acquisition_outputs(self, images):
        """`logits` C's class logits and `features` the trunk's (penultimate) features, for uint8 images."""
        features, logits = self.features_and_logits(to_model_range(images), training=False)
        return {"logits": logits, "features": features}

    def mc_probabilities(self, images, passes):
        """[batch, passes, classes] softmax outputs under `passes` independent dropout masks on the features."""
        features = self.network.trunk(to_model_range(images), training=False)
        return tf.stack([tf.nn.softmax(self.network.classifier(self.dropout(features, training=True)))
                         for _ in range(passes)], axis=1)


class SupervisedClassifier(ClassifierNetwork):
    """C trained on labeled batches only (and, in `update`, optionally on generated images)."""

    streams = 1
    labeled_only = True

    def __init__(self, network_config, optimizer_config, name="classifier"):
        super().__init__(network_config, name)
        self.optimizer = make_adam(optimizer_config.classifier_lr, self.trainable_variables, optimizer_config.beta_1,
                                   average_momentum=optimizer_config.discriminator_average_momentum)
        self.keep_start_weights()

    def restartable(self):
        return {"discriminator": ([self.network], [self.optimizer])}

    def averaging(self):
        return self.optimizer, self.trainable_variables

    def update(self, model_images, labels, generated=None, generated_labels=None, generated_weight=1.0):
        """One Adam step on cross-entropy, plus `generated_weight` times that of generated images with their
        labels (Eq. 9's form); returns the loss."""
        with tf.GradientTape() as tape:
            _, logits = self.features_and_logits(model_images, training=True)
            loss = _cross_entropy(logits, labels)
            if generated is not None:
                _, generated_logits = self.features_and_logits(generated, training=True)
                loss += generated_weight * _cross_entropy(generated_logits, generated_labels)
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        return loss

    def train_step(self, batch):
        return {"loss_classifier": self.update(to_model_range(batch["labeled_images"]), batch["labels"])}


class VAAL(BaselineLearner):
    """VAAL's acquisition (Sinha et al., paper ref. [32]): an unconditional beta-VAE and a latent discriminator.

    ARAL's E, G and S with the class input held at zero. The VAE minimises Eq. 5 (its beta-VAE terms
    and fooling S into calling every code "labeled"); S learns to tell labeled codes from unlabeled
    ones (Eq. 6). The images with the lowest S(mu) are queried.
    """

    def __init__(self, network_config, loss_weights, optimizer_config):
        super().__init__()
        self.network_config, self.loss_weights = network_config, loss_weights
        self.encoder = Encoder(network_config, name="vaal_encoder")
        self.decoder = Generator(network_config, name="vaal_decoder")
        self.sampler = Sampler(network_config, name="vaal_sampler")
        no_class = tf.zeros((1, network_config.num_classes))
        latent = tf.zeros((1, network_config.latent_dim))
        self.encoder(tf.zeros((1,) + tuple(network_config.image_shape)), no_class)
        self.decoder(latent, no_class)
        self.sampler(latent)
        self.vae_optimizer = make_adam(optimizer_config.encoder_generator_lr, self.vae_variables,
                                       optimizer_config.beta_1)
        self.sampler_optimizer = make_adam(optimizer_config.sampler_lr, self.sampler.trainable_variables,
                                           optimizer_config.beta_1)
        self.keep_start_weights()

    def restartable(self):
        """E and the decoder share one optimizer, so restarting either clears it for both (as in ARAL)."""
        return {"encoder": ([self.encoder], [self.vae_optimizer]), "generator": ([self.decoder], [self.vae_optimizer]),
                "sampler": ([self.sampler], [self.sampler_optimizer])}

    @property
    def vae_variables(self):
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    def _no_class(self, images):
        return tf.zeros((tf.shape(images)[0], self.network_config.num_classes))

    def train_step(self, batch):
        """The VAE's step, then S's, on the labeled and unlabeled images of `batch`."""
        real = to_model_range(tf.concat([batch["labeled_images"], batch["unlabeled_images"]], axis=0))
        noise = tf.cast(tf.concat([batch["labeled_noise"], batch["unlabeled_noise"]], axis=0), tf.float32)
        num_labeled = tf.shape(batch["labeled_images"])[0]
        no_class = self._no_class(real)
        with tf.GradientTape() as tape:
            mu, log_var = self.encoder(real, no_class, training=True)
            reconstructions = self.decoder(mu + tf.exp(0.5 * log_var) * noise, no_class, training=True)
            nll = losses.reconstruction_nll(real, reconstructions)
            kl = losses.kl_divergence(mu, log_var)
            sampler_logits = self.sampler(mu, training=True)
            vae_loss = losses.acquisition_encoder_generator_loss(
                nll[:num_labeled], kl[:num_labeled], nll[num_labeled:], kl[num_labeled:],
                sampler_logits[:num_labeled], sampler_logits[num_labeled:], self.loss_weights)
            scaled_loss = self.vae_optimizer.scale_loss(vae_loss)
        variables = self.vae_variables
        self.vae_optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        latent_means = tf.stop_gradient(mu)
        with tf.GradientTape() as tape:
            sampler_logits = self.sampler(latent_means, training=True)
            sampler_loss = losses.sampler_loss(sampler_logits[:num_labeled], sampler_logits[num_labeled:])
            scaled_loss = self.sampler_optimizer.scale_loss(sampler_loss)
        variables = self.sampler.trainable_variables
        self.sampler_optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        return {"loss_vae": vae_loss, "loss_sampler": sampler_loss}

    def acquisition_score(self, images):
        """S(mu(x)) in (0, 1) for uint8 images: lower means query first."""
        model_images = to_model_range(images)
        mu, _ = self.encoder(model_images, self._no_class(model_images), training=False)
        return tf.sigmoid(self.sampler(mu, training=False))


class SemiSupervisedGAN(ClassifierNetwork):
    """ARAL without E and S: G(z, y) and D, the real/fake score of D being Improved-GAN's logsumexp of C's logits.

    Each step, G descends Eq. 7 (non-saturating) plus feature matching, then D descends Eq. 12 with
    the real/fake term on labeled, unlabeled and generated images and Eq. 9's classification loss
    on labeled images and on generated images with their conditioning labels.
    """

    streams = 3

    def __init__(self, network_config, loss_weights, optimizer_config, name="gan_discriminator"):
        super().__init__(network_config, name)
        self.loss_weights = loss_weights
        self.generator = Generator(network_config, name="gan_generator")
        self.generator(tf.zeros((1, network_config.latent_dim)), tf.zeros((1, network_config.num_classes)))
        self.generator_optimizer = make_adam(optimizer_config.encoder_generator_lr,
                                             self.generator.trainable_variables, optimizer_config.beta_1)
        self.discriminator_optimizer = make_adam(optimizer_config.discriminator_lr, self.trainable_variables,
                                                 optimizer_config.beta_1,
                                                 average_momentum=optimizer_config.discriminator_average_momentum)
        self.keep_start_weights()

    def restartable(self):
        return {"discriminator": ([self.network], [self.discriminator_optimizer]),
                "generator": ([self.generator], [self.generator_optimizer])}

    def averaging(self):
        return self.discriminator_optimizer, self.trainable_variables

    def generate(self, batch, training):
        """G(z, y) for the batch's prior latents and labels, in model range."""
        prior_one_hot = tf.one_hot(tf.cast(batch["prior_labels"], tf.int32), self.network_config.num_classes)
        return self.generator(tf.cast(batch["prior_latent"], tf.float32), prior_one_hot, training=training)

    def train_step(self, batch):
        weights = self.loss_weights
        labeled = to_model_range(batch["labeled_images"])
        unlabeled = to_model_range(batch["unlabeled_images"])
        num_labeled = tf.shape(labeled)[0]
        num_real = num_labeled + tf.shape(unlabeled)[0]
        with tf.GradientTape() as tape:
            generated = self.generate(batch, training=True)
            unlabeled_features, unlabeled_logits = self.features_and_logits(unlabeled, training=True)
            generated_features, generated_logits = self.features_and_logits(generated, training=True)
            unlabeled_features = tf.stop_gradient(unlabeled_features)
            generator_loss = (
                weights.generator_gan * losses.generator_gan_loss(tf.reduce_logsumexp(generated_logits, axis=-1))
                + weights.feature_matching * losses.feature_matching_loss(unlabeled_features, generated_features))
            if weights.class_feature_matching:
                generator_loss += weights.class_feature_matching * losses.class_feature_matching_loss(
                    unlabeled_features, tf.stop_gradient(tf.nn.softmax(unlabeled_logits)), generated_features,
                    tf.one_hot(tf.cast(batch["prior_labels"], tf.int32), self.network_config.num_classes))
            scaled_loss = self.generator_optimizer.scale_loss(generator_loss)
        variables = self.generator.trainable_variables
        self.generator_optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        generated = self.generate(batch, training=True)
        with tf.GradientTape() as tape:
            everything = tf.concat([labeled, unlabeled, generated], axis=0)
            _, logits = self.features_and_logits(everything, training=True)
            real_fake = tf.reduce_logsumexp(logits, axis=-1)
            gan = losses.discriminator_gan_loss(real_fake[:num_labeled], real_fake[num_labeled:num_real],
                                                real_fake[num_real:])
            classification = losses.discriminator_classification_loss(
                logits[:num_labeled], tf.cast(batch["labels"], tf.int32), logits[num_real:],
                tf.cast(batch["prior_labels"], tf.int32), generated_weight=weights.generated_cls,
                confidence=weights.generated_cls_confidence)
            discriminator_loss = losses.discriminator_loss(gan, classification, weights)
            scaled_loss = self.discriminator_optimizer.scale_loss(discriminator_loss)
        variables = self.trainable_variables
        self.discriminator_optimizer.apply_gradients(zip(tape.gradient(scaled_loss, variables), variables))
        return {"loss_generator": generator_loss, "loss_discriminator": discriminator_loss,
                "classification": classification}


class VAALWithClassifier(BaselineLearner):
    """The VAAL baseline: VAAL's acquisition beside a classifier trained on labeled images only."""

    streams = 2

    def __init__(self, network_config, loss_weights, optimizer_config):
        super().__init__()
        self.network_config = network_config
        self.vaal = VAAL(network_config, loss_weights, optimizer_config)
        self.classifier = SupervisedClassifier(network_config, optimizer_config)

    def initialize_from_data(self, images):
        self.classifier.initialize_from_data(images)

    acquisition_keys = ("score", "logits", "features")

    def averaging(self):
        return self.classifier.averaging()

    def classify(self, images):
        return self.classifier.classify(images)

    def acquisition_outputs(self, images):
        """VAAL's `score` S(mu(x)), with the classifier's `logits` and `features`."""
        return {"score": self.vaal.acquisition_score(images), **self.classifier.acquisition_outputs(images)}

    def train_step(self, batch):
        return {**self.vaal.train_step(batch), **self.classifier.train_step(batch)}


class VAALWithGANClassifier(VAALWithClassifier):
    """ARAL without co-training: VAAL's acquisition; C learns from labeled images and from the images of a
    conditional GAN (`SemiSupervisedGAN`) trained beside it on the pool, with their conditioning labels,
    weighted by `loss_weights.generated_cls` as in ARAL's Eq. 9."""

    streams = 3

    def __init__(self, network_config, loss_weights, optimizer_config):
        super().__init__(network_config, loss_weights, optimizer_config)
        self.gan = SemiSupervisedGAN(network_config, loss_weights, optimizer_config)
        self.generated_weight = loss_weights.generated_cls

    def initialize_from_data(self, images):
        super().initialize_from_data(images)
        self.gan.initialize_from_data(images)

    def train_step(self, batch):
        gan_losses = self.gan.train_step(batch)
        vaal_losses = self.vaal.train_step(batch)
        classifier_loss = self.classifier.update(
            to_model_range(batch["labeled_images"]), batch["labels"],
            tf.stop_gradient(self.gan.generate(batch, training=False)), tf.cast(batch["prior_labels"], tf.int32),
            generated_weight=self.generated_weight)
        return {**gan_losses, **vaal_losses, "loss_classifier": classifier_loss}

"""ARAL's losses, one function per equation of the paper (Sec. 3, Eqs. 5-13).

Conventions:
- Every loss is a quantity to *minimise*; D(.) = sigmoid(real/fake logit) and
  S(.) = sigmoid(sampler logit), so log D = -softplus(-logit) and
  log(1 - D) = -softplus(logit).
- Expectations are means over the *global* batch: each replica sums its
  examples and divides by `global_batch_size` (`tf.nn.compute_average_loss`),
  and the optimizer sums the replicas' gradients. `None` means this replica's
  batch times the number of replicas, which is right for equal-sized splits.
- Labeled, unlabeled and generated streams have the same batch size.

Eqs. 7, 8 and 10 are the working game of the method they cite rather than as
printed: non-saturating Eq. 7, the GAN discriminator's -log(1 - D(G)) in Eq. 8,
and E playing against D's pair head in Eq. 10 (docs/design.md says why).
"""

import dataclasses

import tensorflow as tf

from aral_tf.tfgan_compat import tfgan_losses

_TFGAN_LOSSES = tfgan_losses()


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The lambdas and beta of Eqs. 5, 11 and 12 (paper Sec. 4.1 values), our weights inside them, and
    what S and Eq. 9 read.

    `feature_matching` and `class_feature_matching` weigh the feature-matching
    terms added to G's loss; `generator_gan` weighs Eq. 7 and `generated_cls`
    Eq. 9's generated-image term, of which only the images C already reads as
    their label with probability above `generated_cls_confidence` count (0: all,
    the paper). `sampler_reads_prediction` conditions the codes S reads on C's
    prediction for labeled images too (the paper: on their labels). The defaults
    are the paper's; docs/design.md gives ours.
    """

    gan: float = 1.0
    cls: float = 1.0
    trd: float = 0.001
    adv: float = 0.001
    beta: float = 1.0
    feature_matching: float = 1.0
    generator_gan: float = 1.0
    generated_cls: float = 1.0
    class_feature_matching: float = 0.0
    generated_cls_confidence: float = 0.0
    sampler_reads_prediction: bool = False


def _mean(per_example, global_batch_size):
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def _global_batch_mean(values, global_batch_size):
    """Mean over the global batch (axis 0) of `values`, identical on every replica."""
    context = tf.distribute.get_replica_context()
    local_sum = tf.reduce_sum(values, axis=0)
    if global_batch_size is None:
        global_batch_size = tf.shape(values)[0] * context.num_replicas_in_sync
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, local_sum)
    return total / tf.cast(global_batch_size, values.dtype)


def _num_replicas():
    return tf.distribute.get_replica_context().num_replicas_in_sync


def reconstruction_nll(images, reconstructions):
    """-log p(x | z, y) per example, Gaussian with unit variance: 0.5 * sum (x - G(z, y))^2.

    The likelihood term of the beta-VAE in Eqs. 1 and 5 (constants dropped).
    """
    squared = tf.square(tf.cast(images, tf.float32) - tf.cast(reconstructions, tf.float32))
    return 0.5 * tf.reduce_sum(tf.reshape(squared, [tf.shape(squared)[0], -1]), axis=-1)


def kl_divergence(mu, log_var):
    """D_KL(q(z | x, y) || N(0, I)) per example: 0.5 * sum (exp(log_var) + mu^2 - 1 - log_var).

    The KL term of the beta-VAE in Eqs. 1 and 5.
    """
    return 0.5 * tf.reduce_sum(tf.exp(log_var) + tf.square(mu) - 1.0 - log_var, axis=-1)


def acquisition_encoder_generator_loss(nll_labeled, kl_labeled, nll_unlabeled, kl_unlabeled,
                                       sampler_logits_labeled, sampler_logits_unlabeled,
                                       weights, global_batch_size=None):
    """Eq. 5: L_E^acq + L_G^acq.

        lambda_trd * (E[-log p(x_L | z_L, y_L)] + beta * KL(q(z_L | x_L, y_L) || p(z)))
      + lambda_trd * (E[-log p(x_U | z_U, C(x_U))] + beta * KL(q(z_U | x_U, C(x_U)) || p(z)))
      - lambda_adv * (E[log S(mu_L)] + E[log S(mu_U)])

    The first two lines are the class-conditional beta-VAE (printed in Eq. 5
    with ELBO signs; minimised here as the negative ELBO), the last is the
    encoder fooling the sampler into calling every code "labeled".
    """
    transductive = (_mean(nll_labeled + weights.beta * kl_labeled, global_batch_size)
                    + _mean(nll_unlabeled + weights.beta * kl_unlabeled, global_batch_size))
    adversarial = (_mean(tf.nn.softplus(-sampler_logits_labeled), global_batch_size)
                   + _mean(tf.nn.softplus(-sampler_logits_unlabeled), global_batch_size))
    return weights.trd * transductive + weights.adv * adversarial


def sampler_loss(sampler_logits_labeled, sampler_logits_unlabeled, global_batch_size=None):
    """Eq. 6 (and Eq. 13, L_S = L_S^acq): -E[log S(mu_L)] - E[log(1 - S(mu_U))]."""
    return (_mean(tf.nn.softplus(-sampler_logits_labeled), global_batch_size)
            + _mean(tf.nn.softplus(sampler_logits_unlabeled), global_batch_size))


def generator_gan_loss(real_fake_logits_generated, global_batch_size=None):
    """Eq. 7 in its non-saturating form: -E_{z~p(z), y~p(y)}[log D(G(z, y), z, y)].

    Printed in the minimax form E[log(1 - D(G(z, y), z, y))], whose gradient
    vanishes while D rejects G's images, so G would not learn its class input
    (TF-GAN's "modified" generator loss is this one). Takes the logits of D's
    class head; against the pair head G plays `pair_generator_loss`.
    """
    return _mean(tf.nn.softplus(-real_fake_logits_generated), global_batch_size)


def feature_matching_loss(features_unlabeled, features_generated, global_batch_size=None):
    """Feature matching of Salimans et al. [27] (paper Sec. 4.1), added to G's GAN loss.

        mean_k ( E_{x~X_U}[D~(x)_k] - E_{z, y}[D~(G(z, y))_k] )^2

    (the squared distance of the mean features, averaged over the feature
    dimension as in the reference implementation). The means are over the
    global batch (all-reduced across replicas). Each replica returns its
    1/num_replicas share so that the summed gradients equal the single-device
    gradient.
    """
    difference = (_global_batch_mean(features_unlabeled, global_batch_size)
                  - _global_batch_mean(features_generated, global_batch_size))
    return tf.reduce_mean(tf.square(difference)) / tf.cast(_num_replicas(), difference.dtype)


def class_feature_matching_loss(features_real, real_class_weights, features_generated, generated_one_hot):
    """Class-conditional feature matching: feature matching of Salimans et al. [27] per class.

        mean_{k present} mean_f ( m_real[k]_f - m_gen[k]_f )^2,
        m_real[k] = sum_i w_ik D~(x_i) / sum_i w_ik,   m_gen[k] = mean of D~(G(z, k))

    Real images are weighted by their conditioning labels (true one-hot for
    labeled images, C(x) for unlabeled ones, as in Eqs. 5, 8 and 10), so G's
    class-k images are pulled towards the features of the real images C reads
    as class k. Classes with less than half an image's weight on either side
    in the global batch are left out. Sums are all-reduced across replicas;
    each replica returns its 1/num_replicas share.
    """
    context = tf.distribute.get_replica_context()

    def weighted_means(features, weights):
        weights = tf.cast(weights, features.dtype)
        sums = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.matmul(weights, features, transpose_a=True))
        mass = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(weights, axis=0))
        return sums / tf.maximum(mass, 1e-6)[:, None], mass

    real_means, real_mass = weighted_means(features_real, real_class_weights)
    generated_means, generated_mass = weighted_means(features_generated, generated_one_hot)
    present = tf.cast((real_mass >= 0.5) & (generated_mass >= 0.5), real_means.dtype)
    per_class = tf.reduce_mean(tf.square(real_means - generated_means), axis=-1)
    value = tf.reduce_sum(present * per_class) / tf.maximum(tf.reduce_sum(present), 1.0)
    return value / tf.cast(_num_replicas(), value.dtype)


def discriminator_gan_loss(real_fake_logits_labeled, real_fake_logits_unlabeled,
                           real_fake_logits_generated, global_batch_size=None):
    """Eq. 8: L_D^gan.

        - E_{(x, y)~(X_L, Y_L)}[log D(x, E(x, y), y)]
        - E_{x~X_U}[log D(x, E(x, C(x)), C(x))]
        - E_{z~p(z), y~p(y)}[log(1 - D(G(z, y), z, y))]

    The third term is the GAN discriminator's (printed as +log D(G); see the
    module docstring). Computed with TF-GAN's `minimax_discriminator_loss`
    without label smoothing, summed, then divided by the global batch. Takes
    the logits of D's class head; L_D^gan adds `pair_discriminator_loss` for the
    pair head (see `networks.Discriminator`).
    """
    if global_batch_size is None:
        global_batch_size = tf.shape(real_fake_logits_generated)[0] * _num_replicas()
    total = _TFGAN_LOSSES.minimax_discriminator_loss(
        tf.concat([real_fake_logits_labeled, real_fake_logits_unlabeled], axis=0),
        real_fake_logits_generated,
        label_smoothing=0.0,
        reduction=tf.compat.v1.losses.Reduction.SUM)
    return total / tf.cast(global_batch_size, total.dtype)


def discriminator_classification_loss(logits_labeled, labels, logits_generated, generated_labels,
                                      generated_weight=1.0, confidence=0.0, global_batch_size=None):
    """Eq. 9, gated: -E_{(x, y)~(X_L, Y_L)}[log p(C(x) = y)] - w * E_{z, y}[m * log p(C(G(z, y)) = y)],

        m = 1[p(C(G(z, y)) = y) > confidence]   (held fixed; m = 1 for confidence 0),   w = generated_weight.

    The mean is over the whole generated batch, so the term grows with the share of G's images C
    reads as their label. The paper's Eq. 9 has w = 1 and no gate (confidence 0); a gate keeps C
    from learning its own mistakes on G's images, as Triple-GAN keeps only confident pseudo-labels.
    """
    labeled = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits_labeled)
    generated = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=generated_labels,
                                                                logits=logits_generated)
    if confidence > 0:
        # exp(-cross-entropy) is the probability C gives the conditioning label.
        generated *= tf.stop_gradient(tf.cast(tf.exp(-generated) > confidence, generated.dtype))
    return _mean(labeled, global_batch_size) + generated_weight * _mean(generated, global_batch_size)


def encoder_bigan_loss(pair_logits_labeled, pair_logits_unlabeled, global_batch_size=None):
    """Eq. 10 as BiGAN's encoder plays it, against D's pair head phi:

        -1/2 (E_{(x, y)~(X_L, Y_L)}[log(1 - D(x, E(x, y)))] + E_{x~X_U}[log(1 - D(x, E(x, C(x))))])
      = 1/2 (E[softplus(phi(D~(x), E(x, y)))] + E[softplus(phi(D~(x), E(x, C(x))))]),   D = sigmoid(phi)

    Printed as -log D(x, E(x, y), y) (the encoder agreeing with D). E keeps
    this saturating form although D's pair head plays the hinge game: its push
    fades once D reads its pairs as generated, where a loss linear in phi drove
    the codes into E's bound. The labeled and unlabeled streams are averaged,
    so real pairs weigh as much as generated ones.
    """
    return 0.5 * (_mean(tf.nn.softplus(pair_logits_labeled), global_batch_size)
                  + _mean(tf.nn.softplus(pair_logits_unlabeled), global_batch_size))


def pair_generator_loss(pair_logits_generated, global_batch_size=None):
    """Eq. 7 against D's pair head in the hinge game: -E_{z~p(z), y~p(y)}[phi(D~(G(z, y)), z)]."""
    return -_mean(pair_logits_generated, global_batch_size)


def pair_discriminator_loss(pair_logits_labeled, pair_logits_unlabeled, pair_logits_generated,
                            global_batch_size=None):
    """Eq. 8 for D's pair head phi, in the hinge form of S3GAN [22] and BigGAN:

        1/2 (E_{(x, y)}[max(0, 1 - phi(x, E(x, y)))] + E_{x~X_U}[max(0, 1 - phi(x, E(x, C(x))))])
      + E_{z, y}[max(0, 1 + phi(G(z, y), z))]

    (real pairs, labeled and unlabeled averaged, weigh as much as generated ones).
    phi also sees D~(x), which tells real images from generated ones, so the
    logistic loss always pays D to raise phi further; the hinge stops past the margin.
    """
    return (0.5 * (_mean(tf.nn.relu(1.0 - pair_logits_labeled), global_batch_size)
                   + _mean(tf.nn.relu(1.0 - pair_logits_unlabeled), global_batch_size))
            + _mean(tf.nn.relu(1.0 + pair_logits_generated), global_batch_size))


def encoder_generator_loss(acquisition, encoder_gan, generator_gan, feature_matching, class_feature_matching,
                           weights):
    """Eq. 11: L_E + L_G = L_E^acq + L_G^acq + lambda_gan * L_E^gan + lambda_gan * L_G^gan.

    L_G^gan is `weights.generator_gan` times Eq. 7 plus the weighted feature
    matching and class-conditional feature matching.
    """
    return acquisition + weights.gan * (
        encoder_gan + weights.generator_gan * generator_gan + weights.feature_matching * feature_matching
        + weights.class_feature_matching * class_feature_matching)


def discriminator_loss(discriminator_gan, classification, weights):
    """Eq. 12: L_D = lambda_gan * L_D^gan + lambda_cls * L_D^cls."""
    return weights.gan * discriminator_gan + weights.cls * classification

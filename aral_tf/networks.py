"""The four networks of ARAL (paper Sec. 3, Fig. 2; architectures of Sec. 4.1-4.2).

- Encoder E(x, y) -> (mu, log_var): class-conditional beta-VAE encoder, shared
  by the acquisition function and the BiGAN.
- Generator G(z, y) -> image: the VAE decoder and the conditional GAN generator.
- Discriminator D: a trunk D~(x) -> features h, a linear class head
  c_cl(h) -> logits (the target classifier C), and two real/fake heads:
  one on the class logits and the label, one on the features and the latent
  code (BiGAN).
- Sampler S(mu) -> logit of "labeled": the VAAL latent discriminator.

Three families, picked by `NetworkConfig.architecture`: `mlp` (MNIST),
`cnn` (SVHN, CIFAR-10) and `resnet` (CelebA, ImageNet-sized inputs). Every
width is multiplied by `NetworkConfig.width` so the convolutional models also
run small on a CPU.
"""

import dataclasses

import keras
import tensorflow as tf

ARCHITECTURES = ("mlp", "cnn", "resnet")


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Shapes and sizes of the four networks."""

    image_shape: tuple
    num_classes: int
    architecture: str = "mlp"
    latent_dim: int = 100
    width: float = 1.0
    input_noise_std: float = 0.6
    hidden_noise_std: float = 0.5
    dropout_rate: float = 0.5
    sampler_units: int = 512

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.architecture != "mlp" and (self.image_shape[0] % 8 or self.image_shape[1] % 8):
            raise ValueError(
                f"{self.architecture} networks need height and width divisible by 8, got {self.image_shape}")

    def units(self, base):
        """`base` units scaled by the width multiplier (at least 4)."""
        return max(4, int(round(base * self.width)))


# E's outputs are softly bounded. The KL term that should hold them near the prior has weight
# lambda_trd * beta = 0.001, and the BiGAN game (Eq. 10) drove the codes to overflow without a bound.
MAX_ABS_MEAN = 10.0
MAX_ABS_LOG_VARIANCE = 8.0


def _soft_bound(x, limit):
    """limit * tanh(x / limit): the identity near 0, never beyond +-limit."""
    return limit * keras.ops.tanh(x / limit)


def _float32(x):
    """Network outputs are float32, also when the layers compute in float16 (mixed precision)."""
    return keras.ops.cast(x, "float32")


def _leaky_relu(x):
    return keras.activations.leaky_relu(x, negative_slope=0.2)


def _with_label(features, label):
    """Concatenates a flat feature tensor and a one-hot (or soft) label."""
    return keras.ops.concatenate([features, keras.ops.cast(label, features.dtype)], axis=-1)


class WeightNormDense(keras.layers.Layer):
    """Dense layer with weight normalisation (Salimans & Kingma, 2016): w = g * v / ||v||.

    The MNIST discriminator of Improved-GAN [27] uses it with the scale g fixed
    in the hidden layers (`train_scale=False`) and trained only in the class
    layer: the hidden layers then cannot grow their outputs, which keeps the
    GAN game and feature matching stable.
    """

    def __init__(self, units, activation=None, train_scale=True, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.train_scale = train_scale

    def build(self, input_shape):
        self.direction = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform",
                                         name="direction")
        self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale",
                                     trainable=self.train_scale)
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs):
        norm = keras.ops.sqrt(keras.ops.sum(keras.ops.square(self.direction), axis=0) + 1e-12)
        outputs = keras.ops.matmul(inputs, self.direction) * (self.scale / norm) + self.bias
        return self.activation(outputs)

    def initialize_from_data(self, inputs):
        """Data-dependent initialisation (Salimans & Kingma): unit-variance, zero-mean outputs on `inputs`.

        Returns this layer's outputs on `inputs` after the change.
        """
        norm = keras.ops.sqrt(keras.ops.sum(keras.ops.square(self.direction), axis=0) + 1e-12)
        pre_activation = keras.ops.matmul(inputs, self.direction) * (self.scale / norm)
        mean = keras.ops.mean(pre_activation, axis=0)
        std = keras.ops.sqrt(keras.ops.mean(keras.ops.square(pre_activation - mean), axis=0) + 1e-8)
        self.scale.assign(self.scale / std)
        self.bias.assign(-mean / std)
        return self(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "train_scale": self.train_scale,
                "activation": keras.activations.serialize(self.activation)}


class Encoder(keras.Model):
    """E(x, y) -> (mu, log_var) of q(z | x, y)."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        if config.architecture == "mlp":
            self.trunk = keras.Sequential([
                keras.layers.Flatten(),
            ], name="trunk")
            self.head = keras.Sequential([
                keras.layers.Dense(config.units(500), activation=_leaky_relu),
                keras.layers.Dense(config.units(500), activation=_leaky_relu),
                keras.layers.Dense(2 * config.latent_dim),
            ], name="head")
        else:
            self.trunk = keras.Sequential(
                _conv_downsampler(config, residual=config.architecture == "resnet")
                + [keras.layers.Flatten()], name="trunk")
            self.head = keras.Sequential([
                keras.layers.Dense(config.units(512), activation=_leaky_relu),
                keras.layers.Dense(2 * config.latent_dim),
            ], name="head")

    def call(self, images, labels, training=False):
        stats = self.head(_with_label(self.trunk(images, training=training), labels), training=training)
        mu, log_var = keras.ops.split(_float32(stats), 2, axis=-1)
        return _soft_bound(mu, MAX_ABS_MEAN), _soft_bound(log_var, MAX_ABS_LOG_VARIANCE)


class Generator(keras.Model):
    """G(z, y) -> image in [-1, 1]."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        height, width, channels = config.image_shape
        if config.architecture == "mlp":
            self.body = keras.Sequential([
                keras.layers.Dense(config.units(500), activation="softplus"),
                keras.layers.LayerNormalization(),
                keras.layers.Dense(config.units(500), activation="softplus"),
                keras.layers.LayerNormalization(),
                keras.layers.Dense(height * width * channels, activation="tanh"),
                keras.layers.Reshape(config.image_shape),
            ], name="body")
        else:
            base = config.units(256)
            self.body = keras.Sequential(
                [
                    keras.layers.Dense((height // 8) * (width // 8) * base, activation="relu"),
                    keras.layers.Reshape((height // 8, width // 8, base)),
                ]
                + _conv_upsampler(config, residual=config.architecture == "resnet")
                + [keras.layers.Conv2D(channels, 3, padding="same", activation="tanh")],
                name="body")

    def call(self, latent, labels, training=False):
        return _float32(self.body(_with_label(latent, labels), training=training))


class Discriminator(keras.Model):
    """D~(x) -> features h; C(x) = c_cl(h); two real/fake heads for the triple (x, z, y).

    D(x, z, y) = sigmoid(c(h, y) + phi(h, z)), with l = c_cl(h):

        class head   c(h, y) = LSE(l) + y . log softmax(l)   (l_y for a one-hot y; Salimans et al. [27])
        pair head    phi(h, z), a small MLP over the features and the latent code (BiGAN [5])

    Each head plays the GAN game on its own, the pair head in the hinge form (losses.py). D trains
    the class head on LSE(l) alone (`train_discriminator=True`) and the pair head on fixed features
    (model.py); G plays against the whole class head. Why: docs/design.md, "D's real/fake heads".
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        if config.architecture == "mlp":
            layers = [keras.layers.Flatten(), keras.layers.GaussianNoise(config.input_noise_std)]
            for index, base in enumerate((1000, 500, 250, 250, 250)):
                if index:
                    layers.append(keras.layers.GaussianNoise(config.hidden_noise_std))
                layers.append(WeightNormDense(config.units(base), activation="relu", train_scale=False))
            self.trunk = keras.Sequential(layers, name="trunk")
        elif config.architecture == "cnn":
            self.trunk = keras.Sequential(_cnn_discriminator_layers(config), name="trunk")
        else:
            self.trunk = keras.Sequential(
                _conv_downsampler(config, residual=True, dropout=config.dropout_rate)
                + [keras.layers.GlobalAveragePooling2D()], name="trunk")
        self.classifier = WeightNormDense(config.num_classes, name="classifier")
        self.latent_pathway = keras.layers.Dense(config.units(250), activation=_leaky_relu,
                                                 name="latent_pathway")
        self.pair_head = keras.Sequential([
            keras.layers.Dense(config.units(250), activation=_leaky_relu),
            keras.layers.Dense(1),
        ], name="pair_head")

    def build(self, input_shape):
        self.trunk.build(input_shape)
        features_shape = self.trunk.compute_output_shape(input_shape)
        self.classifier.build(features_shape)
        self.latent_pathway.build((None, self.config.latent_dim))
        self.pair_head.build((None, features_shape[-1] + self.latent_pathway.units))

    def initialize_from_data(self, images):
        """Data-dependent initialisation of the weight-normalised layers on model-range `images`."""
        outputs = images
        for layer in self.trunk.layers + [self.classifier]:
            if isinstance(layer, WeightNormDense):
                outputs = layer.initialize_from_data(outputs)
            else:
                outputs = layer(outputs, training=False)

    def call(self, images, training=False):
        """Returns (features h = D~(x), class logits C(x))."""
        features = _float32(self.trunk(images, training=training))
        return features, _float32(self.classifier(features))

    def class_head_logit(self, logits, labels, train_discriminator=False):
        """c(h, y) = LSE(l) + y . log softmax(l) for one-hot or soft `labels`; LSE(l) with `train_discriminator`
        (D's side of the game, and G's in the unconditional pretraining game)."""
        total = keras.ops.logsumexp(logits, axis=-1)
        if train_discriminator:
            return total
        return total + keras.ops.sum(keras.ops.cast(labels, logits.dtype) * keras.ops.log_softmax(logits, axis=-1),
                                     axis=-1)

    def pair_head_logit(self, features, latent):
        """phi(h, z): the real/fake logit of the (image, code) pair."""
        joint = keras.ops.concatenate([features, self.latent_pathway(latent)], axis=-1)
        return _float32(keras.ops.squeeze(self.pair_head(joint), axis=-1))


class Sampler(keras.Model):
    """S(mu) -> logit that the latent code belongs to a labeled image (5-layer MLP)."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.body = keras.Sequential(
            [keras.layers.Dense(config.sampler_units, activation="relu") for _ in range(4)] + [keras.layers.Dense(1)],
            name="body")

    def call(self, latent_mean, training=False):
        return _float32(keras.ops.squeeze(self.body(latent_mean, training=training), axis=-1))


def _conv_downsampler(config, residual, dropout=0.0):
    """Three (cnn) or four (resnet) stride-2 stages: 64, 128, 256[, 512] x width channels."""
    bases = (64, 128, 256) if not residual else (64, 128, 256, 512)
    layers = []
    for index, base in enumerate(bases):
        filters = config.units(base)
        stride = 2 if index < 3 else 1
        if residual:
            layers.append(ResidualBlock(filters, stride=stride))
            if dropout:
                layers.append(keras.layers.Dropout(dropout))
        else:
            layers.append(keras.layers.Conv2D(filters, 4, strides=2, padding="same", activation=_leaky_relu))
    return layers


def _conv_upsampler(config, residual):
    """Three (cnn) or four (resnet) stages up to the image size: 256, 128, 64[, 64] x width channels."""
    bases = (256, 128, 64) if not residual else (256, 128, 64, 64)
    layers = []
    for index, base in enumerate(bases):
        filters = config.units(base)
        upsample = index < 3
        if residual:
            layers.append(ResidualBlock(filters, upsample=upsample))
        else:
            layers.append(keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", activation="relu"))
    return layers


def _cnn_discriminator_layers(config):
    """Three convolutional blocks of three layers with dropout between blocks (Sec. 4.1)."""
    wide, wider = config.units(96), config.units(192)
    layers = [keras.layers.GaussianNoise(config.input_noise_std)]
    for filters, last_stride in ((wide, 2), (wider, 2)):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same", activation=_leaky_relu),
            keras.layers.Conv2D(filters, 3, padding="same", activation=_leaky_relu),
            keras.layers.Conv2D(filters, 3, strides=last_stride, padding="same", activation=_leaky_relu),
            keras.layers.Dropout(config.dropout_rate),
        ]
    layers += [
        keras.layers.Conv2D(wider, 3, padding="valid", activation=_leaky_relu),
        keras.layers.Conv2D(wider, 1, activation=_leaky_relu),
        keras.layers.Conv2D(wider, 1, activation=_leaky_relu),
        keras.layers.GlobalAveragePooling2D(),
    ]
    return layers


class ResidualBlock(keras.layers.Layer):
    """Two 3x3 convolutions with a skip connection; optional stride-2 down or 2x up sampling.

    A downsampling skip average-pools, then applies a 1x1 convolution (as SNGAN's ResNet discriminator):
    oneDNN's CPU gradient of a strided 1x1 convolution over few channels writes out of bounds
    (uxlfoundation/oneDNN#6035) and crashed narrow CelebA models.
    """

    def __init__(self, filters, stride=1, upsample=False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.stride = stride
        self.upsample = upsample
        self.resize = keras.layers.UpSampling2D(2) if upsample else None
        self.conv1 = keras.layers.Conv2D(filters, 3, strides=stride, padding="same")
        self.conv2 = keras.layers.Conv2D(filters, 3, padding="same")
        self.pool = keras.layers.AveragePooling2D(stride) if stride > 1 else None
        self.skip = keras.layers.Conv2D(filters, 1)

    def call(self, inputs):
        if self.resize is not None:
            inputs = self.resize(inputs)
        hidden = self.conv1(_leaky_relu(inputs))
        hidden = self.conv2(_leaky_relu(hidden))
        return hidden + self.skip(inputs if self.pool is None else self.pool(inputs))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "stride": self.stride,
                "upsample": self.upsample}


def build_networks(config):
    """Creates and builds E, G, D, S for `config`; returns them as a tuple."""
    encoder, generator = Encoder(config, name="encoder"), Generator(config, name="generator")
    discriminator, sampler = Discriminator(config, name="discriminator"), Sampler(config, name="sampler")
    images = tf.zeros((1,) + tuple(config.image_shape))
    labels = tf.zeros((1, config.num_classes))
    latent = tf.zeros((1, config.latent_dim))
    encoder(images, labels)
    generator(latent, labels)
    features, logits = discriminator(images)
    discriminator.pair_head_logit(features, latent)
    sampler(latent)
    return encoder, generator, discriminator, sampler


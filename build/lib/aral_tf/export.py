"""SavedModel export of the classifier C and the acquisition scorer, and the run's Keras save.

Layout of an export directory (TF Serving's: one integer version per subdirectory):
    EXPORT_DIR/classifier/<version>/    images -> probabilities, classes, logits of C
    EXPORT_DIR/sampler/<version>/       images -> labeled_probability, acquisition_score, latent_mean
Both models of one export get the same version, one above the largest already there, so an
existing version is never overwritten. A SavedModel is written to a hidden temporary directory
(which TF Serving ignores) and renamed into place.

Every exported model has four signatures; preprocessing is inside the graph and is the training's
`to_model_range` (through `model.classify` and `model.acquisition_outputs`):
    serving_default  images        uint8 [batch, H, W, C]
    float_images     images        float32 [batch, H, W, C] in [0, 1], converted to uint8 first
                                   (tf.image.convert_image_dtype: exact for the values k / 255)
    image_bytes      image_bytes   string [batch]: PNG or JPEG of any size and channel count
    tf_example       examples      string [batch]: serialized tf.Example with the PNG or JPEG
                                   in feature `image/encoded`
Bad requests (wrong rank or size, empty batch, values outside [0, 1], bytes that are not PNG or
JPEG, strings that are not such a tf.Example) fail with an InvalidArgumentError whose message names
the input and what was expected.
"""

import os
import tempfile
import warnings

import keras
import tensorflow as tf

from aral_tf.cli import quiet_info_logs
from aral_tf.data import resize_uint8
from aral_tf.model import ARALModel
from aral_tf.run_state import TEMPORARY_PREFIX, replaced_atomically

CLASSIFIER = "classifier"
SAMPLER = "sampler"
MODEL_FILE = "model.keras"
EXPORT_SUBDIR = "export"
EXAMPLE_IMAGE_FEATURE = "image/encoded"

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageModelModule(tf.Module):
    """Input signatures shared by the exported models; subclasses define `outputs(uint8_images)`."""

    def __init__(self, image_shape, networks, name=None):
        super().__init__(name=name)
        self.height, self.width, self.channels = (int(size) for size in image_shape)
        # The networks' variables, not the Keras networks: tf.saved_model.save would also try to
        # trace a default signature for each Keras layer (as keras.export.ExportArchive avoids too).
        self.network_variables = [variable for network in networks for variable in network.variables]

    def outputs(self, images):
        """Named output tensors for a uint8 batch of the model's image shape."""
        raise NotImplementedError

    def signatures(self):
        """The concrete functions to save, by signature name."""
        return {
            tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY: self.serve_images.get_concrete_function(),
            "float_images": self.serve_float_images.get_concrete_function(),
            "image_bytes": self.serve_image_bytes.get_concrete_function(),
            "tf_example": self.serve_examples.get_concrete_function(),
        }

    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8)])
    def serve_images(self, images):
        return self.outputs(self._checked_batch(images, "images"))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def serve_float_images(self, images):
        images = self._checked_batch(images, "images")
        in_range = tf.reduce_all((images >= 0.0) & (images <= 1.0))
        check = tf.debugging.Assert(in_range, ["images must be float32 in [0, 1]; got values from",
                                               tf.reduce_min(images), "to", tf.reduce_max(images)])
        with tf.control_dependencies([check]):
            images = tf.image.convert_image_dtype(images, tf.uint8, saturate=True)
        return self.outputs(images)

    @tf.function(input_signature=[tf.TensorSpec(None, tf.string)])
    def serve_image_bytes(self, image_bytes):
        return self.outputs(self._decoded(self._checked_strings(image_bytes, "image_bytes")))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.string)])
    def serve_examples(self, examples):
        examples = self._checked_strings(examples, "examples")
        features = {EXAMPLE_IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)}
        # parse_example's own error quotes the bytes it failed on, and TensorFlow's Python client fails
        # to decode a message that is not UTF-8; so the examples are tried first, and refused in words.
        parsed = (tf.data.Dataset.from_tensor_slices(examples)
                  .map(lambda example: tf.io.parse_single_example(example, features))
                  .ignore_errors().reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))
        check = tf.debugging.Assert(
            tf.equal(parsed, tf.size(examples, out_type=tf.int64)),
            [f"examples must be serialized tf.Example protos with a bytes feature {EXAMPLE_IMAGE_FEATURE}; "
             "only", parsed, "of", tf.size(examples), "are"])
        with tf.control_dependencies([check]):
            encoded = tf.io.parse_example(tf.identity(examples), features)[EXAMPLE_IMAGE_FEATURE]
        return self.outputs(self._decoded(encoded))

    @property
    def _shape_text(self):
        return f"[batch, {self.height}, {self.width}, {self.channels}]"

    def _checked_batch(self, images, name):
        """`images` with a static shape, after checking [batch > 0, H, W, C] at run time."""
        shape = tf.shape(images)
        expected = tf.constant([self.height, self.width, self.channels])
        well_formed = tf.cond(tf.equal(tf.size(shape), 4),
                              lambda: tf.reduce_all(tf.equal(shape[1:], expected)), lambda: False)
        check_shape = tf.debugging.Assert(
            well_formed, [f"{name} must have shape {self._shape_text}; got shape", shape], summarize=8)
        with tf.control_dependencies([check_shape]):
            check_batch = tf.debugging.Assert(shape[0] > 0,
                                              [f"{name} is an empty batch; send at least one image"])
        with tf.control_dependencies([check_batch]):
            return tf.ensure_shape(tf.identity(images), [None, self.height, self.width, self.channels])

    @staticmethod
    def _checked_strings(strings, name):
        shape = tf.shape(strings)
        check_rank = tf.debugging.Assert(tf.equal(tf.size(shape), 1),
                                         [f"{name} must be a string tensor of shape [batch]; got shape", shape],
                                         summarize=8)
        with tf.control_dependencies([check_rank]):
            check_batch = tf.debugging.Assert(tf.size(strings) > 0,
                                              [f"{name} is an empty batch; send at least one image"])
        with tf.control_dependencies([check_batch]):
            return tf.ensure_shape(tf.identity(strings), [None])

    def _decoded(self, encoded_images):
        """PNG or JPEG strings -> uint8 [batch, H, W, C]: channels converted, resized when the size differs."""

        def decode(encoded):
            known = tf.io.is_jpeg(encoded) | tf.equal(tf.strings.substr(encoded, 0, len(_PNG_SIGNATURE)),
                                                       _PNG_SIGNATURE)
            check = tf.debugging.Assert(known, ["image bytes are not a PNG or JPEG image; they start with",
                                                tf.strings.substr(encoded, 0, 8)])
            with tf.control_dependencies([check]):
                image = tf.io.decode_image(encoded, channels=self.channels, expand_animations=False)
            size = tf.shape(image)[:2]
            image = tf.cond(tf.reduce_all(tf.equal(size, [self.height, self.width])), lambda: image,
                            lambda: resize_uint8(image, self.height, self.width))
            return tf.ensure_shape(image, [self.height, self.width, self.channels])

        return tf.map_fn(decode, encoded_images,
                         fn_output_signature=tf.TensorSpec([self.height, self.width, self.channels], tf.uint8))


class ClassifierModule(ImageModelModule):
    """C(x) of an ARALModel: probabilities, classes (int64) and logits."""

    def __init__(self, model):
        super().__init__(model.network_config.image_shape, [model.discriminator], name=CLASSIFIER)
        self._classify = model.classify

    def outputs(self, images):
        logits = self._classify(images)
        return {"probabilities": tf.nn.softmax(logits),
                "classes": tf.argmax(logits, axis=-1, output_type=tf.int64),
                "logits": logits}


class SamplerModule(ImageModelModule):
    """ARAL's acquisition on new images: S(E(x, C(x))), the score ranked by, and the latent mean."""

    def __init__(self, model):
        super().__init__(model.network_config.image_shape, [model.discriminator, model.encoder, model.sampler],
                         name=SAMPLER)
        self._acquisition_outputs = model.acquisition_outputs

    def outputs(self, images):
        outputs = self._acquisition_outputs(images)
        return {"labeled_probability": outputs["score"],
                # What heuristics.LowestScore ranks the pool by: the lowest scores are queried first.
                "acquisition_score": tf.identity(outputs["score"]),
                "latent_mean": outputs["latent"]}


def _versions(export_dir, name):
    """The integer versions saved under export_dir/name."""
    directory = os.path.join(export_dir, name)
    return {int(entry) for entry in os.listdir(directory) if entry.isdigit()} if os.path.isdir(directory) else set()


def next_version(export_dir):
    """One above the largest integer version under export_dir/{classifier,sampler} (1 when none)."""
    return max(_versions(export_dir, CLASSIFIER) | _versions(export_dir, SAMPLER), default=0) + 1


def _unfinished(export_dir):
    """(version, names) of an export stopped midway: its newest version lacks one model; else None."""
    newest = next_version(export_dir) - 1
    missing = [name for name in (CLASSIFIER, SAMPLER) if newest not in _versions(export_dir, name)]
    return (newest, missing) if newest and missing else None


def _temporaries(export_dir):
    """The temporary directories of SavedModels being written (or left by a killed process)."""
    return [os.path.join(export_dir, name, entry) for name in (CLASSIFIER, SAMPLER)
            if os.path.isdir(os.path.join(export_dir, name))
            for entry in os.listdir(os.path.join(export_dir, name)) if entry.startswith(TEMPORARY_PREFIX)]


def is_complete(export_dir):
    """True when export_dir holds both models of its newest version and no SavedModel half-written."""
    return next_version(export_dir) > 1 and _unfinished(export_dir) is None and not _temporaries(export_dir)


def remove_temporaries(export_dir):
    """Deletes the temporary SavedModel directories a killed export left (only with no export running)."""
    for path in _temporaries(export_dir):
        tf.io.gfile.rmtree(path)


def latest_export(export_dir):
    """{name: version dir} of the newest version under export_dir holding both models; {} when there is none."""
    version = next_version(export_dir) - 1
    found = {name: os.path.join(export_dir, name, str(version)) for name in (CLASSIFIER, SAMPLER)}
    return found if version and all(os.path.isdir(path) for path in found.values()) else {}


def _save_version(module, base_dir, version):
    """Saves `module` as base_dir/<version> through a temporary directory; returns the version dir."""
    os.makedirs(base_dir, exist_ok=True)
    final = os.path.join(base_dir, str(version))
    temporary = tempfile.mkdtemp(dir=base_dir, prefix=f"{TEMPORARY_PREFIX}{version}-")
    try:
        with quiet_info_logs():
            tf.saved_model.save(module, temporary, signatures=module.signatures())
        os.rename(temporary, final)
    except BaseException:
        tf.io.gfile.rmtree(temporary)
        raise
    return final


def export_run(model, export_dir, finish=False):
    """Exports the classifier and the sampler of `model` under a new version; returns {name: version dir}.

    With `finish`, an export of the same model stopped midway (its newest version lacks one of the
    two) is finished instead: only the missing model is saved, under that version.
    D holds the moving average of its weights during the export, as in evaluation and acquisition.
    """
    unfinished = _unfinished(export_dir) if finish else None
    version, names = unfinished or (next_version(export_dir), (CLASSIFIER, SAMPLER))
    modules = {CLASSIFIER: ClassifierModule, SAMPLER: SamplerModule}
    with model.averaged():
        return {name: _save_version(modules[name](model), os.path.join(export_dir, name), version)
                for name in names}


def save_model(model, path):
    """Saves the whole model (networks, optimizer states, moving average) as a .keras file, atomically."""
    with replaced_atomically(path, suffix=".keras") as temporary, warnings.catch_warnings():
        # ARALModel builds its networks in __init__; Keras only sees that it was never called.
        warnings.filterwarnings("ignore", message="You are saving a model that has not yet been built")
        model.save(temporary)


def load_model(path):
    """An ARALModel saved by `save_model`, loaded in Keras safe mode (no code is deserialized)."""
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    if not isinstance(model, ARALModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not an ARALModel")
    return model


def save_run(model, run_dir, export=True):
    """End of a run: run_dir/model.keras, and with `export` the SavedModels in run_dir/export (finishing
    an export of this run that a killed process left half-written).

    Returns the version dirs of both exported models ({} without the export).
    """
    save_model(model, os.path.join(run_dir, MODEL_FILE))
    if not export:
        return {}
    export_dir = os.path.join(run_dir, EXPORT_SUBDIR)
    export_run(model, export_dir, finish=True)
    return latest_export(export_dir)

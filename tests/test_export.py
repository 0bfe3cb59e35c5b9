"""SavedModel export: every signature in a process without this package, bad requests, versions, Keras save."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from aral_tf import data as data_lib
from aral_tf import export
from aral_tf.distribution import make_strategy
from aral_tf.model import ARALModel
from aral_tf.networks import NetworkConfig
from tests.helpers import tiny_config, tiny_images, trained_model

MNIST_CONFIG = NetworkConfig(image_shape=(28, 28, 1), num_classes=10, architecture="mlp", latent_dim=4,
                             width=0.02, sampler_units=16, input_noise_std=0.0, hidden_noise_std=0.0,
                             dropout_rate=0.0)

SIGNATURES = ("serving_default", "float_images", "image_bytes", "tf_example")

# Runs with a clean environment in an empty directory: only TensorFlow, never aral_tf.
LOADER = textwrap.dedent('''
    import base64, json, os, sys
    import numpy as np
    import tensorflow as tf

    try:
        import aral_tf
    except ImportError:
        pass
    else:
        sys.exit("aral_tf is importable; the SavedModels must load without it")

    export_dir, inputs_path, outputs_path, errors_path = sys.argv[1:]
    with open(inputs_path, encoding="utf-8") as stream:
        cases = json.load(stream)
    arrays = np.load(inputs_path.replace(".json", ".npz"), allow_pickle=False)

    def tensor(value):
        if "array" in value:
            return tf.constant(arrays[value["array"]])
        if "strings" in value:
            return tf.constant([base64.b64decode(item) for item in value["strings"]], tf.string)
        return tf.constant(base64.b64decode(value["string"]))

    outputs, errors = {}, {}
    for model_name in ("classifier", "sampler"):
        signatures = tf.saved_model.load(os.path.join(export_dir, model_name, "1")).signatures

        def call(case):
            return signatures[case["signature"]](**{case["input"]: tensor(case["value"])})

        for case in cases["good"]:
            for name, value in call(case).items():
                outputs[f"{model_name}|{case['name']}|{name}"] = value.numpy()
        reference = cases["good"][0]
        for case in cases["bad"]:
            try:
                call(case)
                message = None
            except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
                message = str(error)
            after = call(reference)
            serving = all(np.array_equal(value.numpy(), outputs[f"{model_name}|{reference['name']}|{name}"])
                          for name, value in after.items())
            errors[f"{model_name}|{case['name']}"] = {"message": message, "serving_after": serving}
    np.savez(outputs_path, **outputs)
    with open(errors_path, "w", encoding="utf-8") as stream:
        json.dump(errors, stream)
''')

# (case, signature, input, value key, what the error must say).
BAD_REQUESTS = (
    ("rank", "serving_default", "images", "rank3", "images must have shape [batch, 28, 28, 1]"),
    ("size", "serving_default", "images", "wrong_size", "images must have shape [batch, 28, 28, 1]"),
    ("dtype", "serving_default", "images", "float_images", "uint8"),
    ("empty", "serving_default", "images", "empty", "images is an empty batch"),
    ("range", "float_images", "images", "out_of_range", "images must be float32 in [0, 1]"),
    ("garbage", "image_bytes", "image_bytes", "garbage", "not a PNG or JPEG image"),
    ("truncated", "image_bytes", "image_bytes", "truncated_png", "PNG"),
    ("empty_bytes", "image_bytes", "image_bytes", "no_strings", "image_bytes is an empty batch"),
    ("scalar_bytes", "image_bytes", "image_bytes", "scalar_png",
     "image_bytes must be a string tensor of shape [batch]"),
    ("no_feature", "tf_example", "examples", "examples_without_image", "image/encoded"),
)


def encode_png(images):
    return [tf.io.encode_png(image).numpy() for image in images]


def serialized_examples(encoded_images, feature=export.EXAMPLE_IMAGE_FEATURE):
    return [tf.train.Example(features=tf.train.Features(feature={
        feature: tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))})).SerializeToString()
            for encoded in encoded_images]


def classifier_outputs(model, images):
    logits = model.classify(images).numpy()
    return {"logits": logits, "probabilities": tf.nn.softmax(logits).numpy(),
            "classes": np.argmax(logits, axis=-1)}


def sampler_outputs(model, images):
    outputs = model.acquisition_outputs(images)
    probability, latent_mean = outputs["score"], outputs["latent"]
    return {"labeled_probability": probability.numpy(), "acquisition_score": probability.numpy(),
            "latent_mean": latent_mean.numpy()}


class ExportedSignaturesTest(tf.test.TestCase):
    """A tiny model trained 2 steps on real MNIST digits, exported once and loaded in a clean process."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        mnist = data_lib.load_npz(data_lib.DEMO_FILE)
        cls.model = trained_model(MNIST_CONFIG, mnist.x_train[:40], mnist.y_train[:8])
        cls.images = mnist.x_test[:6]
        cls.workdir = tempfile.mkdtemp()
        cls.paths = export.export_run(cls.model, os.path.join(cls.workdir, "export"))

    @classmethod
    def tearDownClass(cls):
        tf.io.gfile.rmtree(cls.workdir)
        super().tearDownClass()

    def write_requests(self):
        """Inputs of every good and bad request, and the uint8 images each good request stands for."""
        images = self.images
        jpegs = [tf.io.encode_jpeg(image, quality=90).numpy() for image in images]
        large = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)
        arrays = {
            "images": images, "float_images": images.astype(np.float32) / 255.0,
            "rank3": images[..., 0], "wrong_size": np.zeros((2, 32, 32, 1), np.uint8),
            "empty": images[:0], "out_of_range": images.astype(np.float32),
        }
        strings = {
            "png": encode_png(images), "jpeg": jpegs, "rgb_png": encode_png(np.repeat(images, 3, axis=-1)),
            "large_png": encode_png(large), "examples": serialized_examples(encode_png(images)),
            "garbage": [b"not an image at all"], "truncated_png": [encode_png(images)[0][:40]],
            "no_strings": [],
            "examples_without_image": serialized_examples(encode_png(images[:1]), feature="image/raw"),
            "scalar_png": encode_png(images)[0],
        }

        def value(key):
            if key in arrays:
                return {"array": key}
            if isinstance(strings[key], bytes):
                return {"string": base64.b64encode(strings[key]).decode()}
            return {"strings": [base64.b64encode(item).decode() for item in strings[key]]}

        good = [("uint8", "serving_default", "images", "images", images),
                ("float", "float_images", "images", "float_images", images),
                ("png", "image_bytes", "image_bytes", "png", images),
                ("jpeg", "image_bytes", "image_bytes", "jpeg",
                 np.stack([tf.io.decode_jpeg(jpeg, channels=1).numpy() for jpeg in jpegs])),
                # R = G = B, so any RGB -> grayscale conversion gives back the digit exactly.
                ("rgb_png", "image_bytes", "image_bytes", "rgb_png", images),
                ("large_png", "image_bytes", "image_bytes", "large_png",
                 np.stack([data_lib.resize_uint8(image, 28, 28).numpy() for image in large])),
                ("example", "tf_example", "examples", "examples", images)]
        cases = {
            "good": [{"name": name, "signature": signature, "input": input_name, "value": value(key)}
                     for name, signature, input_name, key, _ in good],
            "bad": [{"name": name, "signature": signature, "input": input_name, "value": value(key)}
                    for name, signature, input_name, key, _ in BAD_REQUESTS],
        }
        inputs_path = os.path.join(self.workdir, "inputs.json")
        with open(inputs_path, "w", encoding="utf-8") as stream:
            json.dump(cases, stream)
        np.savez(inputs_path.replace(".json", ".npz"), **arrays)
        return inputs_path, {name: expected for name, _, _, _, expected in good}

    @pytest.mark.slow
    def test_signatures_in_a_process_without_this_package(self):
        inputs_path, expected_inputs = self.write_requests()
        outputs_path = os.path.join(self.workdir, "outputs.npz")
        errors_path = os.path.join(self.workdir, "errors.json")
        script = os.path.join(self.workdir, "load_exported.py")
        with open(script, "w", encoding="utf-8") as stream:
            stream.write(LOADER)
        environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
        environment["TF_CPP_MIN_LOG_LEVEL"] = "3"
        cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
        export_dir = os.path.join(self.workdir, "export")
        loader = [sys.executable, script, export_dir, inputs_path, outputs_path, errors_path]
        processes = [subprocess.Popen(loader, cwd=self.workdir, env=environment, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)]
        processes += [subprocess.Popen([cli, "show", "--dir", path, "--all"], cwd=self.workdir, env=environment,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                      for path in self.paths.values()]
        results = [process.communicate(timeout=600) + (process.returncode,) for process in processes]
        self.assertEqual(results[0][2], 0, results[0][1])

        outputs = np.load(outputs_path, allow_pickle=False)
        with self.model.averaged():
            expected = {(name, case): function(self.model, images)
                        for name, function in (("classifier", classifier_outputs), ("sampler", sampler_outputs))
                        for case, images in expected_inputs.items()}
        last_weights_logits = self.model.classify(self.images).numpy()
        for (name, case), values in expected.items():
            for output, value in values.items():
                served = outputs[f"{name}|{case}|{output}"]
                if output == "classes":
                    self.assertEqual(served.dtype, np.int64)
                    self.assertAllEqual(served, value, msg=f"{name} {case} {output}")
                else:
                    self.assertAllClose(served, value, atol=1e-5, msg=f"{name} {case} {output}")
        # The export holds the moving average of D's weights, not the last training weights.
        self.assertNotAllClose(outputs["classifier|uint8|logits"], last_weights_logits, atol=1e-4)

        with open(errors_path, encoding="utf-8") as stream:
            errors = json.load(stream)
        for name in ("classifier", "sampler"):
            for case, *_, fragment in BAD_REQUESTS:
                error = errors[f"{name}|{case}"]
                self.assertIsNotNone(error["message"], f"{name} {case} did not fail")
                self.assertIn(fragment, error["message"], f"{name} {case}")
                self.assertTrue(error["serving_after"], f"{name} {case}: wrong answer after the bad request")

        for (stdout, stderr, returncode), (name, outputs_names) in zip(
                results[1:], (("classifier", ("probabilities", "classes", "logits")),
                              ("sampler", ("labeled_probability", "acquisition_score", "latent_mean")))):
            self.assertEqual(returncode, 0, stderr)
            for signature in SIGNATURES:
                self.assertIn(f"signature_def['{signature}']", stdout, name)
            for output in outputs_names:
                self.assertIn(f"outputs['{output}']", stdout, name)
            for input_name in ("images", "image_bytes", "examples"):
                self.assertIn(f"inputs['{input_name}']", stdout, name)


class ChannelConversionTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_grayscale_png_feeds_an_rgb_model(self):
        model = ARALModel(tiny_config(image_shape=(8, 8, 3)))
        with tempfile.TemporaryDirectory() as directory:
            signatures = tf.saved_model.load(export.export_run(model, directory)[export.CLASSIFIER]).signatures
            gray = tiny_images(3, (8, 8, 1), seed=4)
            from_bytes = signatures["image_bytes"](image_bytes=tf.constant(encode_png(gray)))
            from_rgb = signatures["serving_default"](images=tf.constant(np.repeat(gray, 3, axis=-1)))
        self.assertAllClose(from_bytes["logits"], from_rgb["logits"])


class GarbageExampleTest(tf.test.TestCase):

    def test_tf_example_of_bytes_that_are_not_utf8_is_an_invalid_argument(self):
        model = ARALModel(tiny_config())
        with tempfile.TemporaryDirectory() as directory:
            signature = tf.saved_model.load(export.export_run(model, directory)[export.CLASSIFIER]).signatures[
                "tf_example"]
            good = serialized_examples(encode_png(tiny_images(2, seed=5)))
            self.assertEqual(signature(examples=tf.constant(good))["logits"].shape, (2, 3))
            for garbage in ([b"\xff\xfe\x80garbage\xc3"], good[:1] + [b"\x0a\x05\x0a\x03\xff\xfe"]):
                with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "serialized tf.Example"):
                    signature(examples=tf.constant(garbage))


class MirroredStrategyTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_model_trained_under_mirrored_strategy_saves_and_exports(self):
        strategy = make_strategy("mirrored")
        self.assertEqual(strategy.num_replicas_in_sync, 2)
        with strategy.scope():
            model = ARALModel(tiny_config())
        images = tiny_images(4, seed=2)
        with tempfile.TemporaryDirectory() as directory:
            paths = export.save_run(model, directory)
            served = tf.saved_model.load(paths[export.CLASSIFIER]).signatures["serving_default"]
            loaded = export.load_model(os.path.join(directory, export.MODEL_FILE))
            with model.averaged():
                expected = model.classify(images)
            self.assertAllClose(served(images=tf.constant(images))["logits"], expected)
            self.assertAllEqual(loaded.classify(images), model.classify(images))


class VersionTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_versions_increase_and_existing_ones_stay(self):
        model = ARALModel(tiny_config())
        with tempfile.TemporaryDirectory() as directory:
            first = export.export_run(model, directory)
            self.assertEqual(first, {name: os.path.join(directory, name, "1")
                                     for name in (export.CLASSIFIER, export.SAMPLER)})
            with open(os.path.join(first[export.CLASSIFIER], "saved_model.pb"), "rb") as stream:
                first_graph = stream.read()
            os.makedirs(os.path.join(directory, export.SAMPLER, "7"))
            os.makedirs(os.path.join(directory, export.CLASSIFIER, "not_a_version"))
            second = export.export_run(model, directory)
            self.assertEqual(second[export.CLASSIFIER], os.path.join(directory, export.CLASSIFIER, "8"))
            self.assertEqual(second[export.SAMPLER], os.path.join(directory, export.SAMPLER, "8"))
            with open(os.path.join(first[export.CLASSIFIER], "saved_model.pb"), "rb") as stream:
                self.assertEqual(stream.read(), first_graph)
            for name in (export.CLASSIFIER, export.SAMPLER):
                self.assertEqual([entry for entry in os.listdir(os.path.join(directory, name))
                                  if entry.startswith(".")], [])

    def test_an_export_stopped_midway_is_finished_under_its_version(self):
        model = ARALModel(tiny_config())
        with tempfile.TemporaryDirectory() as directory:
            self.assertFalse(export.is_complete(directory))
            export.export_run(model, directory)
            self.assertTrue(export.is_complete(directory))
            tf.io.gfile.rmtree(os.path.join(directory, export.SAMPLER, "1"))
            leftover = os.path.join(directory, export.SAMPLER, ".tmp-1-abc")
            os.makedirs(leftover)
            self.assertFalse(export.is_complete(directory))
            export.remove_temporaries(directory)
            self.assertFalse(os.path.exists(leftover))
            self.assertFalse(export.is_complete(directory))
            self.assertEqual(export.export_run(model, directory, finish=True),
                             {export.SAMPLER: os.path.join(directory, export.SAMPLER, "1")})
            self.assertTrue(export.is_complete(directory))
            self.assertEqual(set(export.export_run(model, directory, finish=True).values()),
                             {os.path.join(directory, name, "2") for name in (export.CLASSIFIER, export.SAMPLER)})

    def test_next_version_of_a_missing_directory_is_one(self):
        self.assertEqual(export.next_version(os.path.join(tempfile.gettempdir(), "no-such-export-dir")), 1)


class KerasSaveTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_round_trip_keeps_weights_optimizer_state_and_average(self):
        model = trained_model(tiny_config(), tiny_images(20), np.array([0, 1, 2, 0]), steps=3)
        images = tiny_images(5, seed=9)
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, export.MODEL_FILE)
            export.save_model(model, path)
            self.assertEqual(os.listdir(directory), [export.MODEL_FILE])
            loaded = export.load_model(path)
        self.assertEqual(loaded.network_config, model.network_config)
        self.assertEqual(loaded.optimizer_config, model.optimizer_config)
        self.assertEqual(int(loaded.discriminator_optimizer.iterations), 3)
        self.assertAllEqual(loaded.classify(images), model.classify(images))
        with model.averaged(), loaded.averaged():
            self.assertAllEqual(loaded.classify(images), model.classify(images))
            self.assertAllEqual(loaded.acquisition_outputs(images)["score"], model.acquisition_outputs(images)["score"])

    def test_load_rejects_a_model_that_is_not_aral(self):
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "other.keras")
            keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(path)
            with self.assertRaisesRegex(ValueError, "not an ARALModel"):
                export.load_model(path)


if __name__ == "__main__":
    tf.test.main()

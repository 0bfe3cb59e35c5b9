"""export/client.py: REST bodies and gRPC requests fed through the loaded SavedModel (no model server here)."""

import base64
import json
import os
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from aral_tf import export
from aral_tf.model import ARALModel
from export import client
from tests.helpers import tiny_config, tiny_images

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def decode_json_value(value):
    """What TF Serving's REST API does with {"b64": ...} objects."""
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [decode_json_value(item) for item in value]
    return value


def serve_rest(models, model_name, body):
    """Stands in for TF Serving's REST predict on a columnar body; the reply goes through JSON text."""
    signature = models[model_name].signatures[body["signature_name"]]
    specs = signature.structured_input_signature[1]
    inputs = {name: tf.constant(decode_json_value(value), dtype=specs[name].dtype)
              for name, value in body["inputs"].items()}
    outputs = signature(**inputs)
    reply = {"outputs": {name: value.numpy().tolist() for name, value in outputs.items()}}
    return json.loads(json.dumps(reply))


def serve_grpc(models, request_bytes):
    """Stands in for PredictionService.Predict; request and response cross the wire as bytes."""
    request = predict_pb2.PredictRequest.FromString(request_bytes)
    signature = models[request.model_spec.name].signatures[request.model_spec.signature_name]
    outputs = signature(**{name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return predict_pb2.PredictResponse.FromString(response.SerializeToString())


@pytest.fixture(name="served", scope="module")
def fixture_served():
    """A tiny model, its SavedModels loaded by name, and the outputs the in-memory model gives on `images`."""
    model = ARALModel(tiny_config())
    images = tiny_images(3, seed=5)
    with tempfile.TemporaryDirectory() as directory:
        models = {name: tf.saved_model.load(path) for name, path in export.export_run(model, directory).items()}
    with model.averaged():
        logits = model.classify(images).numpy()
        outputs = model.acquisition_outputs(images)
        probability, latent_mean = outputs["score"], outputs["latent"]
    expected = {
        export.CLASSIFIER: {"logits": logits, "probabilities": tf.nn.softmax(logits).numpy(),
                            "classes": np.argmax(logits, axis=-1)},
        export.SAMPLER: {"labeled_probability": probability.numpy(), "acquisition_score": probability.numpy(),
                         "latent_mean": latent_mean.numpy()},
    }
    return models, images, expected


def request_inputs(images):
    """The same images as a uint8 batch and as PNG bytes, by signature."""
    return {"serving_default": {"images": images},
            "image_bytes": {"image_bytes": [tf.io.encode_png(image).numpy() for image in images]}}


def test_rest_body_is_columnar_with_base64_bytes():
    body = client.rest_body({"image_bytes": [b"abc", b"\x89PNG"], "images": np.array([[1, 2]], np.uint8)},
                            "image_bytes")
    assert body == {"signature_name": "image_bytes",
                    "inputs": {"image_bytes": [{"b64": "YWJj"}, {"b64": "iVBORw=="}], "images": [[1, 2]]}}
    assert client.rest_url("localhost:8501", "sampler") == "http://localhost:8501/v1/models/sampler:predict"


def test_grpc_request_names_model_signature_and_typed_inputs():
    request = client.grpc_request("sampler", {"images": np.zeros((2, 8, 8, 1), np.uint8)})
    assert request.model_spec.name == "sampler"
    assert request.model_spec.signature_name == "serving_default"
    assert request.inputs["images"].dtype == tf.uint8.as_datatype_enum
    assert [dim.size for dim in request.inputs["images"].tensor_shape.dim] == [2, 8, 8, 1]


@pytest.mark.parametrize("model_name", [export.CLASSIFIER, export.SAMPLER])
def test_rest_and_grpc_requests_through_the_loaded_signatures(served, model_name):
    models, images, expected = served
    for signature_name, inputs in request_inputs(images).items():
        body = client.rest_body(inputs, signature_name)
        by_rest = client.parse_rest_response(serve_rest(models, model_name, body))
        request = client.grpc_request(model_name, inputs, signature_name)
        by_grpc = client.parse_grpc_response(serve_grpc(models, request.SerializeToString()))
        for outputs in (by_rest, by_grpc):
            assert set(outputs) == set(expected[model_name])
            for name, value in expected[model_name].items():
                np.testing.assert_allclose(outputs[name], value, rtol=1e-5, atol=1e-6,
                                           err_msg=f"{model_name} {signature_name} {name}")


def test_rest_error_reply_raises_serving_error():
    with pytest.raises(client.ServingError, match="empty batch"):
        client.parse_rest_response({"error": "images is an empty batch; send at least one image"})


def free_local_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_command_without_a_server_gives_one_line_and_exit_code_1():
    with tempfile.TemporaryDirectory() as directory:
        image = os.path.join(directory, "digit.png")
        tf.io.write_file(image, tf.io.encode_png(tiny_images(1)[0]))
        server = f"127.0.0.1:{free_local_port()}"
        arguments = [sys.executable, "-m", "export.client", f"--server={server}", "--timeout=10", image]
        result = subprocess.run(arguments, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
                                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"error: --server={server}: cannot reach"), result.stderr


def test_command_with_a_missing_file_gives_exit_code_2(capsys):
    client.FLAGS(["client"])
    with pytest.raises(SystemExit) as exit_info:
        client.main(["client", "/no/such/digit.png"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: /no/such/digit.png: cannot read (No such file or directory)"

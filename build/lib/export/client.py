"""A client for the served models: REST (/v1/models/NAME:predict) and gRPC (PredictionService.Predict).

    python -m export.client --model=classifier digit.png                     # REST, localhost:8501
    python -m export.client --protocol=grpc --model=sampler a.png b.jpg      # gRPC, localhost:8500

Sends image files (PNG or JPEG) through the `image_bytes` signature and prints one JSON line of
outputs per image. Requests are built and responses parsed by separate functions, so they can be
checked without a model server (tests/test_export_client.py feeds them through the loaded SavedModel).
"""

import base64
import json
import urllib.error
import urllib.request

from aral_tf import cli

cli.import_tensorflow_quietly()

# pylint: disable=wrong-import-position
from absl import app, flags
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

DEFAULT_SERVERS = {"rest": "localhost:8501", "grpc": "localhost:8500"}
DEFAULT_SIGNATURE = "serving_default"

flags.DEFINE_enum("protocol", "rest", list(DEFAULT_SERVERS), "REST (JSON over HTTP) or gRPC.")
flags.DEFINE_string("server", None, "host:port of the model server; default localhost:8501 (REST), "
                    "localhost:8500 (gRPC).")
flags.DEFINE_string("model", "classifier", "Served model name: classifier or sampler (export/models.config).")
flags.DEFINE_float("timeout", 30.0, "Seconds to wait for an answer.")

FLAGS = flags.FLAGS


class ServingError(Exception):
    """The model server could not be reached or rejected the request; str(e) is its message."""


def rest_url(server, model):
    """The predict endpoint of `model` on `server` (host:port)."""
    return f"http://{server}/v1/models/{model}:predict"


def _json_value(value):
    """Nested lists for JSON; byte strings as {"b64": ...}."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.ndarray) and value.dtype.kind not in "SO":
        return value.tolist()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_value(item) for item in value]
    return value.item() if isinstance(value, np.generic) else value


def rest_body(inputs, signature_name=DEFAULT_SIGNATURE):
    """TF Serving's columnar JSON request: {"signature_name": ..., "inputs": {name: nested lists}}.

    `inputs` maps input names to arrays, or to lists of byte strings (sent as {"b64": ...}).
    """
    return {"signature_name": signature_name,
            "inputs": {name: _json_value(value) for name, value in inputs.items()}}


def parse_rest_response(payload):
    """{"outputs": {name: nested lists}} -> {name: np.ndarray}; an {"error": ...} reply raises ServingError."""
    if "error" in payload:
        raise ServingError(payload["error"])
    return {name: np.asarray(value) for name, value in payload["outputs"].items()}


def rest_predict(server, model, inputs, signature_name=DEFAULT_SIGNATURE, timeout=30.0):
    """POSTs `inputs` to the REST predict endpoint; returns the outputs as arrays."""
    body = json.dumps(rest_body(inputs, signature_name)).encode()
    request = urllib.request.Request(rest_url(server, model), data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.load(response)
    except urllib.error.HTTPError as error:
        try:
            payload = json.load(error)
        except ValueError:
            raise ServingError(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ServingError(f"cannot reach {rest_url(server, model)} ({reason})") from None
    return parse_rest_response(payload)


def grpc_request(model, inputs, signature_name=DEFAULT_SIGNATURE):
    """A PredictRequest for `model`'s signature; `inputs` maps names to arrays or lists of byte strings."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def parse_grpc_response(response):
    """PredictResponse -> {name: np.ndarray}."""
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def grpc_predict(server, request, timeout=30.0):
    """Sends a PredictRequest to PredictionService on `server`; returns the outputs as arrays."""
    with grpc.insecure_channel(server) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as error:
            raise ServingError(f"{error.code().name}: {error.details()}") from None
    return parse_grpc_response(response)


def predict_files(paths, protocol="rest", server=None, model="classifier", timeout=30.0):
    """Sends the image files through `model`'s image_bytes signature; returns {name: array}."""
    image_bytes = []
    for path in paths:
        with open(path, "rb") as stream:
            image_bytes.append(stream.read())
    inputs = {"image_bytes": image_bytes}
    server = server or DEFAULT_SERVERS[protocol]
    if protocol == "grpc":
        return grpc_predict(server, grpc_request(model, inputs, "image_bytes"), timeout)
    return rest_predict(server, model, inputs, "image_bytes", timeout)


def main(argv):
    paths = argv[1:]
    if not paths:
        cli.fail("give one or more image files (PNG or JPEG)")
    try:
        outputs = predict_files(paths, FLAGS.protocol, FLAGS.server, FLAGS.model, FLAGS.timeout)
    except OSError as error:
        cli.fail(f"{error.filename}: cannot read ({error.strerror or error})")
    except ServingError as error:
        cli.fail(f"--server={FLAGS.server or DEFAULT_SERVERS[FLAGS.protocol]}: {cli.one_line(error)}",
                 cli.FAILURE_EXIT_CODE)
    for index, path in enumerate(paths):
        print(json.dumps({"file": path, **{name: value[index].tolist() for name, value in outputs.items()}}))


if __name__ == "__main__":
    app.run(main, flags_parser=lambda argv: cli.parse_flags(argv, FLAGS))

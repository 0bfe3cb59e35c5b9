"""The export/ package: `python -m export`, its bad input (one line, exit code 2), the TF Serving configs."""

import os
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.config import model_server_config_pb2

from aral_tf import export
from aral_tf.model import ARALModel
from export import __main__ as command
from tests.helpers import tiny_config, tiny_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIT = os.path.join(ROOT, "export")


def run_command(*arguments):
    return subprocess.run([sys.executable, "-m", "export", *arguments], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600, check=False)


@pytest.fixture(name="workdir")
def fixture_workdir():
    with tempfile.TemporaryDirectory() as directory:
        yield directory


@pytest.fixture(name="run_dir")
def fixture_run_dir(workdir):
    """A finished run's directory: just model.keras."""
    run_dir = os.path.join(workdir, "run")
    export.save_model(ARALModel(tiny_config()), os.path.join(run_dir, export.MODEL_FILE))
    return run_dir


@pytest.mark.slow
def test_command_exports_the_saved_run(run_dir):
    result = run_command(f"--run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    export_dir = os.path.join(run_dir, export.EXPORT_SUBDIR)
    assert result.stdout.splitlines() == [f"classifier: {export_dir}/classifier/1",
                                          f"sampler: {export_dir}/sampler/1"]
    model = export.load_model(os.path.join(run_dir, export.MODEL_FILE))
    images = tiny_images(4, seed=3)
    with model.averaged():
        expected = model.classify(images)
    served = tf.saved_model.load(os.path.join(export_dir, "classifier", "1")).signatures["serving_default"]
    np.testing.assert_allclose(served(images=tf.constant(images))["logits"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_export_dir_flag_and_next_version(run_dir, workdir):
    target = os.path.join(workdir, "models")
    os.makedirs(os.path.join(target, "classifier", "3"))
    command.parse_flags(["export", f"--run_dir={run_dir}", f"--export_dir={target}"])
    assert command.run() == {"classifier": os.path.join(target, "classifier", "4"),
                             "sampler": os.path.join(target, "sampler", "4")}


def bad_cases(run_dir, workdir):
    empty_run = os.path.join(workdir, "empty_run")
    os.makedirs(empty_run)
    corrupt_run = os.path.join(workdir, "corrupt_run")
    os.makedirs(corrupt_run)
    with open(os.path.join(corrupt_run, export.MODEL_FILE), "wb") as stream:
        stream.write(b"not a keras file")
    blocker = os.path.join(workdir, "a_file")
    with open(blocker, "w", encoding="utf-8") as stream:
        stream.write("x")
    missing = os.path.join(workdir, "missing")
    return [
        (["--run_dir=", "--export_dir="], "error: --run_dir: required"),
        ([f"--run_dir={missing}", "--export_dir="], f"error: --run_dir={missing}: no such directory"),
        ([f"--run_dir={empty_run}", "--export_dir="], f"error: --run_dir={empty_run}: holds no model.keras"),
        ([f"--run_dir={corrupt_run}", "--export_dir="], f"error: --run_dir={corrupt_run}: model.keras cannot"),
        ([f"--run_dir={run_dir}", f"--export_dir={blocker}/models"], f"error: --export_dir={blocker}/models: "),
    ]


def test_bad_input_gives_one_line_and_exit_code_2(run_dir, workdir, capsys):
    for arguments, start in bad_cases(run_dir, workdir):
        command.parse_flags(["export", *arguments])
        with pytest.raises(SystemExit) as exit_info:
            command.main(["export"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2, arguments
        assert len(lines) == 1 and lines[0].startswith(start), (arguments, lines)
    assert sorted(os.listdir(run_dir)) == [export.MODEL_FILE]


@pytest.mark.slow
def test_bad_input_in_a_real_process_has_no_traceback(workdir):
    result = run_command(f"--run_dir={workdir}/missing")
    assert result.returncode == 2
    assert result.stderr == f"error: --run_dir={workdir}/missing: no such directory\n"


def test_models_config_serves_both_exported_models():
    with open(os.path.join(KIT, "models.config"), encoding="utf-8") as stream:
        config = text_format.Parse(stream.read(), model_server_config_pb2.ModelServerConfig())
    models = {model.name: model for model in config.model_config_list.config}
    assert set(models) == {export.CLASSIFIER, export.SAMPLER}
    for name, model in models.items():
        assert model.base_path == f"/models/{name}"
        assert model.model_platform == "tensorflow"


def batching_parameters_class():
    """tensorflow.serving.BatchingParameters (session_bundle_config.proto), which the pip API package lacks."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="batching_parameters_for_test.proto",
                                               package="tensorflow.serving", syntax="proto3",
                                               dependency=["google/protobuf/wrappers.proto"])
    message = proto.message_type.add(name="BatchingParameters")
    wrapped = (("max_batch_size", "Int64Value"), ("batch_timeout_micros", "Int64Value"),
               ("max_enqueued_batches", "Int64Value"), ("num_batch_threads", "Int64Value"),
               ("thread_pool_name", "StringValue"))
    for number, (name, wrapper) in enumerate(wrapped, start=1):
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                          type_name=f".google.protobuf.{wrapper}", label=field.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                      label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_batching_config_is_valid_batching_parameters():
    with open(os.path.join(KIT, "batching.config"), encoding="utf-8") as stream:
        parameters = text_format.Parse(stream.read(), batching_parameters_class()())
    assert parameters.max_batch_size.value >= 1
    assert parameters.num_batch_threads.value >= 1
    assert parameters.HasField("batch_timeout_micros") and parameters.HasField("max_enqueued_batches")


def test_readme_docker_command_uses_the_kit():
    with open(os.path.join(KIT, "README.md"), encoding="utf-8") as stream:
        readme = stream.read()
    for fragment in ("docker run", "tensorflow/serving", "target=/models", "--enable_batching",
                     "--model_config_file=/config/models.config",
                     "--batching_parameters_file=/config/batching.config"):
        assert fragment in readme, fragment

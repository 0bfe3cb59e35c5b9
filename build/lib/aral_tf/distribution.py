"""Distribution strategies by name, the chief of a multi-worker run, and splitting a global batch across replicas."""

import json
import os
import socket
import urllib.parse

import numpy as np
import tensorflow as tf

from aral_tf.cli import one_line

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")
TPU_CONNECT_TIMEOUT_SECONDS = 10


class StrategyError(ValueError):
    """A strategy that cannot be built here (no TPU at the address, malformed TF_CONFIG, ...)."""


def resolve_strategy_name(name, num_gpus):
    """`auto` becomes `mirrored` when several GPUs are visible, else `default`; other names are kept."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        return "mirrored" if num_gpus > 1 else "default"
    return name


def make_strategy(name="default", tpu=None):
    """A `tf.distribute` strategy by name (see `STRATEGIES`).

    `default` runs on one device, `mirrored` on all local GPUs (or CPUs),
    `multi_worker` on every worker of the TF_CONFIG cluster (one worker on
    the local devices without TF_CONFIG), `tpu` on the TPU at `tpu` (an
    address, a Cloud TPU name, or `local` on a TPU VM). Build the strategy
    before any other TensorFlow work: multi-worker collectives must be
    configured at program start-up.
    """
    name = resolve_strategy_name(name, len(tf.config.list_physical_devices("GPU")))
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        _check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    return _tpu_strategy(tpu)


def _check_tf_config(text):
    """Rejects a TF_CONFIG that TensorFlow would misread (absent is fine: one local worker)."""
    if not text:
        return
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise StrategyError(f"TF_CONFIG is not JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) \
            or not isinstance(config.get("task"), dict):
        raise StrategyError('TF_CONFIG needs {"cluster": {...}, "task": {"type": ..., "index": ...}}')
    task = config["task"]
    members = config["cluster"].get(task.get("type"))
    if not isinstance(members, list) or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(members):
        raise StrategyError(f"TF_CONFIG task {task} is not in its cluster {config['cluster']}")


def _tpu_strategy(address):
    if not address:
        raise StrategyError("no TPU address given (a grpc:// address, a Cloud TPU name, or local)")
    parsed = urllib.parse.urlparse(address)
    if parsed.scheme == "grpc":
        # Connecting to a gRPC address where nothing listens blocks for minutes; probe it first.
        try:
            if not parsed.hostname or parsed.port is None:
                raise ValueError("expected grpc://host:port")
            socket.create_connection((parsed.hostname, parsed.port), TPU_CONNECT_TIMEOUT_SECONDS).close()
        except (OSError, ValueError) as error:
            raise StrategyError(f"cannot reach a TPU there ({error})") from None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except Exception as error:  # pylint: disable=broad-except
        # The resolver fails in many ways (name lookup, cloud API, no TPU kernels); each means "no TPU here".
        raise StrategyError(f"no TPU found ({one_line(error, limit=120)})") from None


def is_chief(strategy):
    """Whether this process writes results: the `chief` task, else worker 0; any single-process run."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type in (None, "chief"):
        return True
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and "chief" not in resolver.cluster_spec().as_dict())


def same_on_every_worker(strategy, values):
    """Whether every worker of a multi-worker `strategy` passes the same integers `values` (a collective op).

    Always true for a single-process strategy.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    local = tf.constant([values], tf.int64)
    gathered = strategy.gather(strategy.experimental_distribute_values_from_function(lambda _: local), axis=0)
    gathered = gathered.numpy()
    return bool(np.all(gathered == gathered[:1]))


def split_across_replicas(strategy, batch):
    """Distributes a global batch (an array or a dict of arrays): replica r gets the r-th equal slice.

    Every worker of a multi-worker strategy passes the same global batch and
    keeps the slices of its own replicas, so the split is the same as on one
    machine with as many devices.
    """
    replicas = strategy.num_replicas_in_sync
    size = len(next(iter(batch.values())) if isinstance(batch, dict) else batch)
    if size % replicas:
        raise ValueError(f"batch size {size} is not divisible by the {replicas} replicas")
    if replicas == 1:
        return batch
    share = size // replicas

    def replica_slice(context):
        start = context.replica_id_in_sync_group * share
        return tf.nest.map_structure(lambda value: value[start:start + share], batch)

    return strategy.experimental_distribute_values_from_function(replica_slice)



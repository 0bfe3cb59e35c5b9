"""Strategies by name, the chief of a run, and the split of a global batch across replicas."""

import os
import socket
from unittest import mock

import numpy as np
import tensorflow as tf

from aral_tf import distribution
from tests.helpers import two_cpu_strategy


class StrategyTest(tf.test.TestCase):

    def test_auto_is_mirrored_only_with_several_gpus(self):
        self.assertEqual(distribution.resolve_strategy_name("auto", num_gpus=2), "mirrored")
        self.assertEqual(distribution.resolve_strategy_name("auto", num_gpus=1), "default")
        self.assertEqual(distribution.resolve_strategy_name("auto", num_gpus=0), "default")
        self.assertEqual(distribution.resolve_strategy_name("default", num_gpus=4), "default")

    def test_auto_on_this_cpu_host_is_one_replica(self):
        strategy = distribution.make_strategy("auto")
        self.assertEqual(strategy.num_replicas_in_sync, 1)
        self.assertTrue(distribution.is_chief(strategy))

    def test_unknown_strategy(self):
        with self.assertRaisesRegex(ValueError, "unknown strategy"):
            distribution.make_strategy("quantum")

    def test_tpu_needs_an_address(self):
        with self.assertRaisesRegex(distribution.StrategyError, "no TPU address"):
            distribution.make_strategy("tpu")

    def test_unreachable_tpu_address_fails_fast(self):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        for address in (f"grpc://127.0.0.1:{port}", "grpc://127.0.0.1", "grpc://127.0.0.1:99999"):
            with self.assertRaisesRegex(distribution.StrategyError, "cannot reach"):
                distribution.make_strategy("tpu", tpu=address)

    def test_malformed_tf_config_is_rejected_before_building_the_strategy(self):
        for text, message in (("{not json", "not JSON"), ('{"cluster": {}}', "needs"),
                              ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}',
                               "not in its cluster")):
            with mock.patch.dict(os.environ, {"TF_CONFIG": text}):
                with self.assertRaisesRegex(distribution.StrategyError, message):
                    distribution.make_strategy("multi_worker")


class SplitAcrossReplicasTest(tf.test.TestCase):

    def test_replica_r_gets_the_r_th_slice(self):
        strategy = two_cpu_strategy()
        batch = {"images": np.arange(6).reshape(6, 1), "labels": np.arange(6) * 10}
        distributed = distribution.split_across_replicas(strategy, batch)
        first, second = strategy.experimental_local_results(distributed)
        self.assertAllEqual(first["images"], [[0], [1], [2]])
        self.assertAllEqual(second["labels"], [30, 40, 50])

    def test_one_replica_keeps_the_batch(self):
        batch = np.arange(5)
        self.assertIs(distribution.split_across_replicas(distribution.make_strategy("default"), batch), batch)

    def test_rejects_batch_not_divisible_by_replicas(self):
        strategy = two_cpu_strategy()
        with self.assertRaisesRegex(ValueError, "not divisible"):
            distribution.split_across_replicas(strategy, {"labels": np.zeros(3)})

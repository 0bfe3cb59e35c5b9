"""TF-GAN losses load on TensorFlow 2.21 although `import tensorflow_gan` fails."""

import math
import subprocess
import sys

import pytest
import tensorflow as tf

from aral_tf.tfgan_compat import tfgan_losses


class TfganCompatTest(tf.test.TestCase):

    def test_minimax_discriminator_loss_hand_value(self):
        value = tfgan_losses().minimax_discriminator_loss(
            tf.constant([0.0]), tf.constant([0.0]), label_smoothing=0.0,
            reduction=tf.compat.v1.losses.Reduction.SUM)
        self.assertAllClose(value, 2 * math.log(2.0))

    def test_returns_the_same_module_each_time(self):
        self.assertIs(tfgan_losses(), tfgan_losses())

    @pytest.mark.slow
    def test_plain_import_still_fails_so_the_workaround_is_needed(self):
        """If this starts passing, a TF-GAN release fixed the import and this module can go."""
        result = subprocess.run([sys.executable, "-c", "import tensorflow_gan"], capture_output=True, text=True,
                                check=False)
        self.assertNotEqual(result.returncode, 0)


if __name__ == "__main__":
    tf.test.main()

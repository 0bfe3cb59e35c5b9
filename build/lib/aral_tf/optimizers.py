"""Adam that also keeps a warmed-up moving average of the weights it trains (Polyak averaging), and
`clear_state`, which starts an optimizer afresh."""

import keras
from keras import ops

WARM_UP_STEPS = 10


@keras.saving.register_keras_serializable(package="aral_tf")
class AveragingAdam(keras.optimizers.Adam):
    """Adam with `use_ema`, whose average starts from the first update and warms up.

    After update t (t = 0, 1, ...) the average a of each weight w becomes

        a_0 = w_0,    a_t = m_t a_{t-1} + (1 - m_t) w_t,    m_t = min(ema_momentum, (1 + t) / (WARM_UP_STEPS + t))

    the num_updates rule of tf.train.ExponentialMovingAverage. Keras's own average
    uses m_t = ema_momentum from the second update on, so the first weights keep a
    share of 0.999^t (16 % after 1,800 steps). Overrides Keras's
    `_update_model_variables_moving_average` (keras 3.15, as pinned).
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("use_ema", True)
        super().__init__(*args, **kwargs)

    def _update_model_variables_moving_average(self, trainable_variables):
        if not self.use_ema:
            return
        step = ops.cast(self.iterations, "float32")
        warm = ops.minimum(ops.cast(self.ema_momentum, "float32"), (1.0 + step) / (WARM_UP_STEPS + step))
        momentum = ops.where(ops.equal(self.iterations, 0), 0.0, warm)
        for variable, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                weight = ops.cast(momentum, variable.dtype)
                average.assign(weight * average + (1.0 - weight) * variable)


def clear_state(optimizer):
    """Zeroes `optimizer`'s state (Adam moments, step count, moving average), keeping its learning rate.

    A LossScaleOptimizer's own loss scale is left alone; its inner optimizer is cleared.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    for variable in optimizer.variables:
        if variable.name != "learning_rate":
            variable.assign(ops.zeros_like(variable))

from keras_swish.layers.swish_beta import SwishBeta

__all__ = ["SwishBeta"]

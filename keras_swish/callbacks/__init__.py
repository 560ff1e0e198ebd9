"""Watching the learned β: the BetaMonitor callback and `beta_report`."""

from keras_swish.callbacks.beta_monitor import BetaMonitor
from keras_swish.callbacks.report import BetaReport, beta_report

__all__ = ["BetaMonitor", "BetaReport", "beta_report"]

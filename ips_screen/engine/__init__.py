"""The rules engine: a pure function of one patient's facts and the as-of date."""

from ips_screen.engine.decision import Decision, Step
from ips_screen.engine.evaluate import evaluate

__all__ = ["Decision", "Step", "evaluate"]

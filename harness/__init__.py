"""feature-harness: compare automated-interpretability pipelines and score their feature descriptions."""

__version__ = "0.1.0"

"""skrec: scikit-learn-compatible neural recommenders that train fast and serve in real time."""

__version__ = "0.1.0"

"""roxgate: a self-hosted SMS gateway speaking the ROX JSON API."""

__version__ = "0.1.0"

"""fastlog: a Kafka-compatible streaming broker with a Rust storage core."""

from fastlog._core import __version__

__all__ = ["__version__"]

"""streamml: real-time machine learning on CloudEvents streams."""

__version__ = "0.1.0"

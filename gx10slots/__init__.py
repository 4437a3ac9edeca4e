"""gx10slots: blue/green model slots for a single-node GX10 inference server."""

__version__ = "0.1.0"

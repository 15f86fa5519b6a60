"""RadStream: an event-driven inference pipeline for chest X-rays."""

__version__ = "0.1.0"
PIPELINE_VERSION = __version__

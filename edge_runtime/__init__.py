"""edge-runtime: a Dapr-compatible sidecar for Raspberry-Pi-class devices."""

__version__ = "0.1.0"
__all__ = ["__version__"]

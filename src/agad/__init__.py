"""AGAD: Adversarial Generative Anomaly Detection for images.

A generator learns to reconstruct normal images well and to *fail* on
anomalies, including pseudo-anomalies it makes itself (a reconstruction of a
reconstruction); the anomaly score is the reconstruction error.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
def __getattr__(name): return __import__("agad.detector", fromlist=["AGAD"]).AGAD if name == "AGAD" else object.__getattribute__(__import__(__name__), name)  # noqa: E501,E704 - lazy: `import agad` stays light

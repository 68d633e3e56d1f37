"""edgeprune: filter pruning chosen against measured latency on real edge devices."""

__version__ = "0.1.0"

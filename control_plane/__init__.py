"""agent-control-plane: the governance layer for autonomous software agents."""

__version__ = "0.1.0"

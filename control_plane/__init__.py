"""agent-control-plane: the governance layer for autonomous software agents."""

# regopy must be loaded before greenlet (pulled in by sqlalchemy[asyncio] and structlog): with
# greenlet first, regopy 1.5.2 aborts the process with "free(): invalid pointer" in several time
# builtins, which nothing can catch. Importing it here fixes the order for every entry point.
import regopy  # noqa: F401

__version__ = "0.1.0"

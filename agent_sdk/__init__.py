"""Python client for agent-control-plane, embedded by domain services.

The typed client arrives with the agent-facing routes (credentials and decisions); for now the
package only marks its place in the distribution.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]

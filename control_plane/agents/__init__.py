"""The agent registry: agents, their lifecycle, and the versions of code and model they run."""

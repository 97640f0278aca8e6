"""gateway: one deny-by-default policy for an agent's network, file and command actions."""

__version__ = "0.1.0"

"""mailcase: turns a support mailbox into cases, following the support agreement."""

__version__ = "0.1.0"

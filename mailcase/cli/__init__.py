"""The ``mailcase`` command: the only place that prints or exits."""

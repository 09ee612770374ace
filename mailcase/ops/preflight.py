"""What must hold before the service runs on a configuration: at start, and before a reload takes it.

Every path the configuration names is usable (:mod:`mailcase.config.paths`)
and every template compiles, the override folder's included: a mistake stops
the start with exit 78, or refuses the reload and keeps the running
configuration -- never a service that reports READY and then fails at the
first cutoff.
"""

from __future__ import annotations

from mailcase.config.paths import require_paths
from mailcase.config.settings import Config
from mailcase.outbound.render import templates


def preflight(config: Config) -> None:
    """Raise a :class:`~mailcase.core.errors.ConfigError` naming the key and the path, or the template."""
    require_paths(config)
    templates(config.outgoing.templates_dir).compile_all()

"""What every configuration section is built from: the frozen model, file paths, TOML lists, loopback hosts,
and the error for a path mailcase cannot write.

A :data:`ConfigPath` is a path as written in the configuration file: when the
file is validated with ``context={"base": <folder>}`` (as
:func:`mailcase.config.loader.parse_config` does, with the state directory under
systemd, else the file's folder), a relative path is resolved against that
folder while it is validated, so no code walks the schema to find the paths.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo

from mailcase.core.errors import ConfigError


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _relative_to_file(value: str, info: ValidationInfo) -> str:
    """Relative paths in the file are relative to the file's folder."""
    base = info.context.get("base") if isinstance(info.context, dict) else None
    if not isinstance(base, Path) or not value or os.path.isabs(value):
        return value
    return str(base / value)


#: a file or folder named in the configuration file
ConfigPath = Annotated[str, AfterValidator(_relative_to_file)]


def tuples(data: Any, keys: tuple[str, ...]) -> Any:
    """TOML has lists; frozen config holds tuples."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for key in keys:
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
        elif isinstance(data.get(key), dict):
            data[key] = {k: tuple(v) if isinstance(v, list) else v for k, v in data[key].items()}
    return data


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unwritable(path: Path, exc: OSError) -> ConfigError:
    """The one-line error for a data folder or database file mailcase cannot write (exit 78:
    retrying will not help)."""
    why = (exc.strerror or str(exc)).lower()
    return ConfigError(f"cannot write {path}: {why}; set data_dir or database.url")

"""Every file and folder the configuration names, checked before the service starts.

A path that is missing, of the wrong kind or not writable is a configuration
error naming the key and the path (exit 78: restarting will not help).  The
service checks them at start (``mailcase run``); ``mailcase check`` lists
each problem.  The data folder and the database are checked when they are
opened (:func:`mailcase.config.base.unwritable`); secrets have their own
check, because a secret that cannot be read is a credential problem (77).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mailcase.config.settings import Config
from mailcase.core.errors import ConfigError

Kind = Literal["file", "folder", "writable folder"]


@dataclass(frozen=True)
class PathProblem:
    key: str
    path: str
    problem: str

    def error(self, source: str | None) -> ConfigError:
        where = f"{source}: " if source else ""
        return ConfigError(f"{where}{self.key}: {self.path}: {self.problem}")


def configured_paths(config: Config) -> Iterator[tuple[str, str, Kind]]:
    """(key, path, what it must be) for every path the service reads or writes."""
    for i, box in enumerate(config.mailboxes):
        if not box.enabled:
            continue
        if box.kind == "maildir" and box.path:
            yield f"mailboxes[{i}].path", box.path, "folder"
        if box.ca_file:
            yield f"mailboxes[{i}].ca_file", box.ca_file, "file"
    out = config.outgoing
    if out.transport == "smtp" and out.smtp_ca_file:
        yield "outgoing.smtp_ca_file", out.smtp_ca_file, "file"
    if out.transport == "file":
        yield "outgoing.file_dir", out.file_dir or str(Path(config.data_dir) / "outbox"), "writable folder"
    if config.directory.csv:
        yield "directory.csv", config.directory.csv, "file"
    if config.kb.path:
        yield "kb.path", config.kb.path, "file"  # a folder of articles or a CSV: either exists


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def problem_with(path: str, kind: Kind) -> str | None:
    """What is wrong with ``path`` for its use, or None."""
    p = Path(path)
    if kind == "writable folder":
        # created on first use: the nearest existing folder on the way must let us write
        if p.exists() and not p.is_dir():
            return "not a folder"
        here = _nearest_existing(p)
        if not here.is_dir():
            return f"cannot be created ({here} is not a folder)"
        if not os.access(here, os.W_OK | os.X_OK):
            return f"cannot be written (no write permission on {here})"
        return None
    if not p.exists():
        return "does not exist"
    if kind == "folder" and not p.is_dir():
        return "not a folder"
    if not os.access(p, os.R_OK):
        return "cannot be read (permission denied)"
    return None


def path_problems(config: Config) -> list[PathProblem]:
    return [PathProblem(key, path, problem) for key, path, kind in configured_paths(config)
            if (problem := problem_with(path, kind)) is not None]


def require_paths(config: Config) -> None:
    """Raise the first path problem as a configuration error (exit 78)."""
    problems = path_problems(config)
    if problems:
        raise problems[0].error(config.source)

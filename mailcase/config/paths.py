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

#: what a path must be.  "maildir": a folder, or not yet there in a folder that is (the mail
#: server makes a Maildir at its first delivery; the mailbox reads as empty until then)
Kind = Literal["file", "folder", "file or folder", "writable folder", "maildir"]


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
            yield f"mailboxes[{i}].path", box.path, "maildir"
        if box.ca_file:
            yield f"mailboxes[{i}].ca_file", box.ca_file, "file"
    out = config.outgoing
    if out.transport == "smtp" and out.smtp_ca_file:
        yield "outgoing.smtp_ca_file", out.smtp_ca_file, "file"
    if out.templates_dir:
        yield "outgoing.templates_dir", out.templates_dir, "folder"
    if out.transport == "file":
        yield "outgoing.file_dir", out.file_dir or str(Path(config.data_dir) / "outbox"), "writable folder"
    if config.directory.csv:
        yield "directory.csv", config.directory.csv, "file"
    if config.kb.path:
        yield "kb.path", config.kb.path, "file or folder"  # a folder of articles or a CSV


def nearest_existing(path: Path) -> Path:
    """``path``, or the nearest folder above it that exists."""
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
        here = nearest_existing(p)
        if not here.is_dir():
            return f"cannot be created ({here} is not a folder)"
        if not os.access(here, os.W_OK | os.X_OK):
            return f"cannot be written (no write permission on {here})"
        return None
    if kind == "maildir" and not p.exists():
        if p.parent.is_dir():
            return None
        return f"does not exist, nor does {p.parent}"
    if not p.exists():
        return "does not exist"
    if kind in ("folder", "maildir") and not p.is_dir():
        return "not a folder"
    if kind == "file" and not p.is_file():
        return "not a file"
    if not os.access(p, os.R_OK | (os.X_OK if p.is_dir() else 0)):
        return "cannot be read (permission denied)"
    return None


def path_problems(config: Config) -> list[PathProblem]:
    found = []
    for key, path, kind in configured_paths(config):
        problem = problem_with(path, kind)
        if problem is None:
            continue
        if os.environ.get("STATE_DIRECTORY") and path.startswith(("/home/", "/root/")):
            problem += " (the unit's ProtectHome=yes hides /home and /root from the service)"
        found.append(PathProblem(key, path, problem))
    return found


def require_paths(config: Config) -> None:
    """Raise the first path problem as a configuration error (exit 78)."""
    problems = path_problems(config)
    if problems:
        raise problems[0].error(config.source)

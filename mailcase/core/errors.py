"""The exception hierarchy.

Two families, handled in one place each (cli.py for the process, the stage
runners for a message):

* ``ConfigError``, ``AuthError``, ``TransientError``: our side or the
  operator's side -- a bad configuration, a server that refuses us, a server
  that is down.  They stop an operation and are reported as one line.
* ``MessageError``: the sender's side -- a mail that cannot be read.  It never
  stops anything; the mail is quarantined with the error and can be retried.
"""

from __future__ import annotations


class MailcaseError(Exception):
    """Base of every error mailcase raises on purpose."""

    #: process exit status when this error ends a CLI command (sysexits.h)
    exit_code = 1


class ConfigError(MailcaseError):
    """The configuration is invalid; the message names the file and the key."""

    exit_code = 78  # EX_CONFIG


class AuthError(MailcaseError):
    """A server rejected our credentials."""

    exit_code = 77  # EX_NOPERM


class TransientError(MailcaseError):
    """A server or the database is unreachable or busy; retrying may succeed."""

    exit_code = 75  # EX_TEMPFAIL


class DatabaseUnavailable(TransientError):
    """The database went away (restart, network); everything waits and retries."""


class LeaseHeld(TransientError):
    """Another process owns the mailbox (or the batch) right now."""


class MessageError(MailcaseError):
    """A message cannot be read at some stage; it is quarantined, never dropped."""

    exit_code = 65  # EX_DATAERR


class UsageError(MailcaseError):
    """The staff CLI was asked for something that does not exist or make sense."""

    exit_code = 2

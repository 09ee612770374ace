"""Whether each configured secret can be read by the user the service runs as, and the fix for whoever runs `check`."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

from mailcase.config.credentials import OAuthConfig, Secret
from mailcase.config.settings import Config
from mailcase.core.errors import MailcaseError

#: the user the systemd unit runs the service as (systemd/mailcase.service, User=)
SERVICE_USER = "mailcase"
#: where the documented install keeps the credentials (README, "Operations")
CREDENTIALS_DIR = "/etc/mailcase/credentials"


def configured_secrets(config: Config) -> Iterator[tuple[str, Secret]]:
    """(configuration key, secret) for every secret the configuration names."""
    if config.secrets.hmac_key is not None:
        yield "secrets.hmac_key", config.secrets.hmac_key
    for i, box in enumerate(config.mailboxes):
        if not box.enabled:
            continue
        if box.password is not None:
            yield f"mailboxes[{i}].password", box.password
        yield from _oauth(f"mailboxes[{i}].oauth", box.oauth)
    out = config.outgoing
    if out.transport == "smtp":
        if out.smtp_password is not None:
            yield "outgoing.smtp_password", out.smtp_password
        yield from _oauth("outgoing.smtp_oauth", out.smtp_oauth)


def _oauth(key: str, oauth: OAuthConfig | None) -> Iterator[tuple[str, Secret]]:
    if oauth is None:
        return
    if oauth.client_secret is not None:
        yield f"{key}.client_secret", oauth.client_secret
    if oauth.refresh_token is not None:
        yield f"{key}.refresh_token", oauth.refresh_token


def readable_by(path: Path, user: str) -> bool:
    """Whether ``user`` may read ``path`` (its mode bits and every folder's search bit on the way)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return False
    if pw.pw_uid == 0:
        return True
    groups = set(os.getgrouplist(user, pw.pw_gid))

    def allowed(p: Path, owner: int, group: int, other: int) -> bool:
        st = p.stat()
        if st.st_uid == pw.pw_uid:
            return bool(st.st_mode & owner)
        if st.st_gid in groups:
            return bool(st.st_mode & group)
        return bool(st.st_mode & other)

    try:
        path = path.absolute()
        return (allowed(path, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)
                and all(allowed(d, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH) for d in path.parents))
    except OSError:
        return False


def service_user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _owner(path: Path) -> str:
    try:
        uid = path.stat().st_uid
        return pwd.getpwuid(uid).pw_name
    except (OSError, KeyError):
        return "?"


def secret_fix(secret: Secret, key: str, euid: int, user: str, service_user: str) -> str:
    """The fix for a secret that cannot be read: right for root (the service reads it as
    ``service_user``) and for a normal user (their own file)."""
    if secret.credential:
        name = secret.credential
        if not os.environ.get("CREDENTIALS_DIRECTORY"):
            if euid == 0:
                return (f"under systemd the unit loads it (LoadCredential={name}:{CREDENTIALS_DIR}/{name}); "
                        f"to check by hand run as the service: sudo -u {service_user} env "
                        f"CREDENTIALS_DIRECTORY={CREDENTIALS_DIR} mailcase --config CONFIG check")
            return (f"set CREDENTIALS_DIRECTORY to the folder holding {name} "
                    f"(e.g. CREDENTIALS_DIRECTORY={CREDENTIALS_DIR} mailcase check), or use {{ file = \"...\" }}")
        path = Path(os.environ["CREDENTIALS_DIRECTORY"]) / name
    elif secret.file:
        path = Path(secret.file)
    else:
        return f"export {secret.env} in the service's environment (or use {{ file = \"...\" }})"
    if not path.exists():
        create = ("head -c 32 /dev/urandom | base64 > " if key == "secrets.hmac_key"
                  else "printf '%s' 'THE-SECRET' > ") + str(path)
        if euid == 0:
            return f"create it: {create}; chown {service_user}: {path}; chmod 600 {path}"
        return f"create it: {create}; chmod 600 {path}"
    if euid == 0:
        cred = path.name
        return (f"the service runs as user {service_user}, who cannot read {path}: chown {service_user}: {path}; "
                f"chmod 600 {path} -- or load it as a systemd credential: LoadCredential={cred}:{path} in the unit "
                f"and {key} = {{ credential = \"{cred}\" }}")
    if _owner(path) == user:
        return f"chmod 600 {path} (it is your file; mailcase reads it as {user})"
    return (f"{path} belongs to {_owner(path)}: ask root to run chown {user}: {path}, then chmod 600 {path}; "
            f"or run check as the service (sudo -u {service_user} mailcase check)")


def check_secret(key: str, secret: Secret, service_user: str | None = None) -> tuple[bool, str, str]:
    """(ok, detail, fix) for one secret, as the user running `check` and, for root, as the service user
    (default :data:`SERVICE_USER`)."""
    service_user = service_user or SERVICE_USER
    euid = os.geteuid()
    user = pwd.getpwuid(euid).pw_name if euid != 0 else "root"
    try:
        secret.read()
    except MailcaseError as exc:
        return False, str(exc), secret_fix(secret, key, euid, user, service_user)
    if euid == 0 and service_user_exists(service_user) and secret.file:
        path = Path(secret.file or "")
        if secret.file and not readable_by(path, service_user):
            group = grp.getgrgid(path.stat().st_gid).gr_name if path.exists() else "?"
            return (False, f"{secret.describe()}: readable by root, not by the service user {service_user} "
                           f"(owner {_owner(path)}:{group}, mode {stat.S_IMODE(path.stat().st_mode):04o})",
                    secret_fix(secret, key, euid, user, service_user))
    return True, f"{secret.describe()}: readable", ""

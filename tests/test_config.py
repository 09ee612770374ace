"""Configuration: the example documents every key; mistakes name the key and the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import ROOT
from pydantic import BaseModel

from mailcase.config.credentials import Secret
from mailcase.config.loader import load_config, parse_config
from mailcase.config.outgoing import OutgoingConfig
from mailcase.config.rules import RulesConfig
from mailcase.config.settings import Config
from mailcase.core.errors import ConfigError

EXAMPLE = ROOT / "config" / "mailcase.example.toml"
OK: dict[str, object] = {"rules": {"sender_authentication": "insecure-off"}}


def _keys(model: type[BaseModel]) -> set[str]:
    return {k for k in model.model_fields if k != "source"}


def test_example_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.mailboxes[0].name == "support"
    assert cfg.mailboxes[0].password == Secret(credential="imap-password")


def test_the_example_and_the_unit_work_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The data in the unit's state directory, every secret a credential the unit loads, mail out by SMTP."""
    unit = (EXAMPLE.parent.parent / "systemd" / "mailcase.service").read_text()
    cfg = load_config(EXAMPLE)
    state = re.search(r"^StateDirectory=(\S+)$", unit, re.M)
    assert state and cfg.data_dir == f"/var/lib/{state.group(1)}"
    assert cfg.database_url == f"sqlite:////var/lib/{state.group(1)}/mailcase.db"
    loaded = set(re.findall(r"^LoadCredential=([^:]+):/etc/mailcase/credentials/\1$", unit, re.M))
    named = set(re.findall(r'^[^#\n]*credential = "([^"]+)"', EXAMPLE.read_text(), re.M))
    assert named and named <= loaded, named - loaded
    assert cfg.secrets.hmac_key == Secret(credential="hmac-key")
    assert cfg.outgoing.transport == "smtp" and cfg.outgoing.smtp_host == "smtp.example.org"
    # under systemd, relative paths are the state directory's; by hand, the file's folder's
    (tmp_path / "c.toml").write_text('[rules]\nsender_authentication = "insecure-off"\n[kb]\npath = "kb"\n')
    by_hand = load_config(tmp_path / "c.toml")
    assert by_hand.data_dir == str(tmp_path / "mailcase-data") and by_hand.kb.path == str(tmp_path / "kb")
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:/var/lib/other")
    under_systemd = load_config(tmp_path / "c.toml")
    assert under_systemd.data_dir == f"{tmp_path}/state" and under_systemd.kb.path == f"{tmp_path}/state/kb"


def test_a_configured_smtp_host_is_the_transport_unless_file_is_asked_for() -> None:
    assert OutgoingConfig.model_validate({"smtp_host": "smtp.example.org"}).transport == "smtp"
    assert OutgoingConfig.model_validate({"smtp_host": "smtp.example.org", "transport": "file"}).transport == "file"
    assert OutgoingConfig().transport == "file"


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#? ?([a-z_]+) = ", text, re.M)) | {"oauth", "smtp_oauth"}
    sections = set(re.findall(r"^\[+([a-z_.]+)\]+", text, re.M))
    documented |= {s.rpartition(".")[2] for s in sections if "." in s}
    for section, model in Config.model_fields.items():
        if section == "source":
            continue
        ann = model.annotation
        inner: object = ann
        if section == "mailboxes":  # list[MailboxConfig]: its item type
            args: tuple[object, ...] = getattr(ann, "__args__", (ann,))
            inner = args[0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            assert section in sections, section
            missing = _keys(inner) - documented
            assert not missing, f"[{section}] keys not in the example: {missing}"
        else:
            assert section in documented, section


def test_defaults_in_example_match_code() -> None:
    """Every key the example sets uncommented carries the code's default (except the mailbox)."""
    from mailcase.config.daemon import DaemonConfig, DatabaseConfig
    from mailcase.config.mailbox import IngestConfig
    from mailcase.config.outgoing import OutgoingConfig
    from mailcase.config.rules import StaffConfig

    cfg = load_config(EXAMPLE)
    assert cfg.database == DatabaseConfig()
    assert cfg.ingest == IngestConfig()
    assert cfg.daemon == DaemonConfig()
    assert cfg.staff == StaffConfig()
    assert cfg.outgoing == OutgoingConfig.model_validate({"smtp_host": "smtp.example.org"})
    from mailcase.config.calendar import CalendarConfig

    assert cfg.calendar == CalendarConfig()
    from mailcase.config.cutoff import BatchConfig
    from mailcase.config.rules import DirectoryConfig

    assert cfg.batch == BatchConfig()
    from mailcase.config.outgoing import KbConfig, SurveyConfig

    assert cfg.surveys == SurveyConfig() and cfg.kb == KbConfig()
    from mailcase.config.daemon import RetentionConfig

    assert cfg.retention == RetentionConfig()
    assert cfg.directory == DirectoryConfig()
    defaults = RulesConfig()
    assert cfg.rules.model_dump(exclude={"sender_authentication", "authserv_id"}) == defaults.model_dump(
        exclude={"sender_authentication", "authserv_id"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"databse": {}}, "databse: unknown key"),
        ({"mailboxes": [{"name": "a", "kind": "imap", "host": "h", "username": "u", "password": {"env": "X"}, "sekurity": "tls"}]}, "mailboxes[0].sekurity: unknown key"),
        ({"mailboxes": [{"name": "a", "host": "h", "username": "u", "password": {"env": "X"}, "security": "plain"}]}, "mailboxes[0].security: plain IMAP is allowed to 127.0.0.1 only"),
        ({"mailboxes": [{"name": "a", "host": "h", "username": "u"}]}, "mailboxes[0].password: required for an imap mailbox"),
        ({"mailboxes": [{"name": "a", "host": "h", "username": "u", "password": {"env": "X", "file": "y"}}]}, "mailboxes[0].password: give exactly one of file, env, credential"),
        ({"mailboxes": [{"name": "a", "host": "h", "username": "u", "password": {"env": "X"}, "post_action": "move"}]}, "mailboxes[0].move_to: required when post_action = move"),
        ({"mailboxes": [{"name": "a", "host": "h", "username": "u", "password": {"env": "X"}, "post_action": "delete"}]}, "mailboxes[0].post_action: Input should be"),
        ({"mailboxes": [{"name": "a", "host": "h", "username": "u", "password": {"env": "X"}, "start_at": "yesterday"}]}, "mailboxes[0].start_at: use now, all, uid:N or an ISO date"),
        ({"mailboxes": [{"name": "a", "kind": "maildir", "path": "/x"}, {"name": "a", "kind": "maildir", "path": "/y"}]}, "mailboxes: duplicate name 'a'"),
        ({"ingest": {"parse_workers": -1}}, "ingest.parse_workers: Input should be greater than or equal to 0"),
        ({"daemon": {"poll_seconds": "60"}}, "daemon.poll_seconds: Input should be a valid number"),
        ({"rules": {}}, "rules.sender_authentication: required: choose"),
        ({"rules": {"sender_authentication": "authserv-id"}}, "rules.authserv_id: required when sender_authentication = authserv-id"),
        ({"rules": {"sender_authentication": "insecure-off", "severity": {"urgent": ["x"]}}}, "rules.severity: unknown level 'urgent'"),
        ({"secrets": {"hmac_key": "abc"}}, "secrets.hmac_key: inline secrets are not allowed"),
    ],
)
def test_mistakes_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**OK, **data}, "/etc/mailcase/mailcase.toml")
    text = str(err.value)
    assert text.startswith("/etc/mailcase/mailcase.toml: "), text
    assert message in text, text
    assert "\n" not in text


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[database\nurl = 1\n")
    with pytest.raises(ConfigError, match=r"c.toml: invalid TOML: .*line 1"):
        load_config(f)


def test_secret_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "s"
    f.write_text("from-file\n")
    assert Secret(file=str(f)).read() == "from-file"
    monkeypatch.setenv("MC_SECRET", "from-env")
    assert Secret(env="MC_SECRET").read() == "from-env"
    (tmp_path / "imap-password").write_text("from-cred")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert Secret(credential="imap-password").read() == "from-cred"
    monkeypatch.delenv("MC_SECRET")
    with pytest.raises(ConfigError, match="MC_SECRET is not set"):
        Secret(env="MC_SECRET").read()


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "c.toml"
    f.parent.mkdir()
    f.write_text('data_dir = "state"\n[rules]\nsender_authentication = "insecure-off"\n[[mailboxes]]\nname = "m"\nkind = "maildir"\npath = "mail"\n')
    cfg = load_config(f)
    assert cfg.data_dir == str(f.parent / "state")
    assert cfg.mailboxes[0].path == str(f.parent / "mail")


def test_config_is_frozen() -> None:
    cfg = parse_config(OK, "t")
    with pytest.raises(Exception):
        cfg.data_dir = "x"

"""The templates ship inside the package and are found through importlib.resources
(a checkout, an editable install, a wheel installed with --target); ``outgoing.templates_dir``
is an override folder in front of them, replacing only the files it holds."""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from datetime import datetime
from email.policy import default
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from batching import Desk, ny
from helpers import ROOT, body_text, config

from mailcase.core.clock import process_clock
from mailcase.core.errors import ConfigError
from mailcase.ops.check import run_checks
from mailcase.outbound.render import environment, packaged, render, templates

ZONE = ZoneInfo("America/New_York")


def ack_vars() -> dict[str, Any]:
    """What an acknowledgement shows, as the cutoff hands it over."""
    case = {"number": 42, "subject": "Invoices do not print", "severity_name": "normal", "repeat_of": None,
            "suggestions": []}
    return {
        "signature": "Support\nsupport@support.example", "zone": ZONE, "requester": "alice@acme.example",
        "requester_name": "Alice", "case": case, "cases": [case], "other_cases": [], "suggestions": [],
        "cutoff": datetime(2026, 11, 23, 9, 30, tzinfo=ZONE), "cutoff_words": "until 09:30 and 15:30",
        "promise_due": datetime(2026, 11, 24, 9, 30, tzinfo=ZONE),
        "promise_breach": datetime(2026, 11, 25, 9, 30, tzinfo=ZONE),
    }


def survey_vars() -> dict[str, Any]:
    case = {"number": 42, "subject": "Invoices do not print", "severity_name": "normal"}
    return {"signature": "Support\nsupport@support.example", "requester_name": "Alice", "cases": [case]}


#: an operator's acknowledgement, still using the packaged promise line it includes
OWN_ACK = ('Subject: Got it: {{ case.subject }}\n\nOur own words for case {{ case.number | case_token }}.\n'
           '{% include "_promise.txt.j2" %}\n')


def test_the_packaged_templates_render_without_an_override() -> None:
    source = templates(None)
    assert source.override is None and source.where().startswith("packaged (")
    assert packaged().joinpath("ack.txt.j2").is_file()
    assert Path(str(packaged())).parent == ROOT / "mailcase"  # inside the package, not beside it
    ack = render(source, "ack", ack_vars())
    assert ack.subject == "Invoices do not print"
    assert ack.text.startswith("Hello Alice,") and "It is now case [Case #000042]" in ack.text
    assert "A specialist will answer you by" in ack.text  # the include resolved
    assert "[Case #000042]" in ack.html
    assert source.compile_all() == []  # every template compiles; none is overridden


def test_the_repo_templates_folder_is_the_documented_example_not_a_copy() -> None:
    example = ROOT / "templates"
    assert (example / "README.md").is_file()
    assert not list(example.glob("*.j2"))  # a copy there would drift from the package
    readme = (example / "README.md").read_text()
    assert "outgoing.templates_dir" in readme and "same name" in readme


def test_an_override_replaces_only_its_own_files(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "ack.txt.j2").write_text(OWN_ACK)
    packaged_ack = render(templates(None), "ack", ack_vars())
    source = templates(str(own))
    assert source.override == own and str(own) in source.where() and "packaged" in source.where()
    ack = render(source, "ack", ack_vars())
    assert ack.subject == "Got it: Invoices do not print"
    assert ack.text.startswith("Our own words for case [Case #000042].")
    assert "A specialist will answer you by" in ack.text  # the packaged include, found behind the override
    assert ack.html == packaged_ack.html  # ack.html.j2 was not overridden
    assert render(source, "survey", survey_vars()) == render(templates(None), "survey", survey_vars())
    assert source.compile_all() == ["ack.txt.j2"]
    # the cache is per override: the packaged environment is untouched by the override's
    assert environment(None) is not environment(str(own))
    assert render(templates(None), "ack", ack_vars()) == packaged_ack


def test_an_override_folder_that_is_not_there_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(ConfigError) as err:
        templates(str(missing))
    assert "outgoing.templates_dir" in str(err.value) and str(missing) in str(err.value)
    assert "does not exist" in str(err.value) and err.value.exit_code == 78
    a_file = tmp_path / "ack.txt.j2"
    a_file.write_text(OWN_ACK)
    with pytest.raises(ConfigError, match="outgoing.templates_dir: .* is not a folder"):
        templates(str(a_file))


def test_a_broken_override_template_is_a_config_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "survey.txt.j2").write_text("Subject: {% if %}\n")
    with pytest.raises(ConfigError, match="survey.txt.j2: TemplateSyntaxError"):
        templates(str(tmp_path)).compile_all()
    (tmp_path / "survey.txt.j2").write_text("Subject: {{ no_such_variable }}\n\nx\n")
    with pytest.raises(ConfigError, match="survey: UndefinedError"):
        render(templates(str(tmp_path)), "survey", survey_vars())


def test_check_says_where_the_templates_come_from(tmp_path: Path) -> None:
    def templates_check(**outgoing: Any) -> Any:
        cfg = config(f"sqlite:///{tmp_path}/mailcase.db", tmp_path, [], outgoing={
            "from_address": "support@support.example", "file_dir": str(tmp_path / "outbox"), **outgoing})
        return next(c for c in run_checks(cfg, process_clock()) if c.what == "templates")

    plain = templates_check()
    assert plain.ok and plain.detail.startswith("packaged (") and "templates_dir" not in plain.detail + plain.fix
    own = tmp_path / "own"
    own.mkdir()
    (own / "ack.txt.j2").write_text(OWN_ACK)
    layered = templates_check(templates_dir=str(own))
    assert layered.ok and f"override {own}" in layered.detail and "replaces ack.txt.j2" in layered.detail
    missing = templates_check(templates_dir=str(tmp_path / "gone"))
    assert not missing.ok and "outgoing.templates_dir" in missing.detail and str(tmp_path / "gone") in missing.detail
    assert "remove outgoing.templates_dir" in missing.fix


def test_a_cutoff_uses_the_override_for_ack_and_the_package_for_the_rest(sqlite_url: str, tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    (own / "ack.txt.j2").write_text(OWN_ACK)
    desk = Desk(sqlite_url, tmp_path, outgoing={"from_address": "support@support.example",
                                                "templates_dir": str(own), "file_dir": str(tmp_path / "outbox")})
    desk.directory()
    desk.mail(ny(2026, 11, 23, 8, 0), subject="Invoices do not print")
    desk.mail(ny(2026, 11, 23, 8, 5), sender="eve@unknown.example", subject="Hello")
    desk.process(ny(2026, 11, 23, 9, 31))
    mails = {r.kind: email.message_from_bytes(r.raw, policy=default) for r in desk.outbox()}
    assert body_text(mails["ack"]).startswith("Our own words for case [Case #000001].")
    assert "Got it: Invoices do not print" in str(mails["ack"]["Subject"])
    [notice] = [m for k, m in mails.items() if k.startswith("notice/")]
    assert "Our own words" not in body_text(notice) and body_text(notice).strip()  # the packaged notice


# -- an installed wheel, away from the source checkout ----------------------------------------------

_IGNORE = shutil.ignore_patterns(".git", ".venv", "tests", "build", "dist", "*.egg-info", "__pycache__",
                                 ".*_cache")

_INSTALLED = textwrap.dedent("""
    import importlib.resources, json, sys
    from datetime import datetime
    from pathlib import Path
    from zoneinfo import ZoneInfo
    import mailcase
    from mailcase.outbound.render import render, templates
    zone = ZoneInfo("America/New_York")
    case = {"number": 7, "subject": "Printer down", "severity_name": "high", "repeat_of": None}
    ack = render(templates(None), "ack", {
        "signature": "S", "requester_name": "", "case": case, "other_cases": [], "suggestions": [],
        "cutoff": datetime(2026, 11, 23, 9, 30, tzinfo=zone), "cutoff_words": "twice a day",
        "promise_due": datetime(2026, 11, 24, 9, 30, tzinfo=zone),
        "promise_breach": datetime(2026, 11, 25, 9, 30, tzinfo=zone)})
    print(json.dumps({"file": mailcase.__file__, "templates": str(importlib.resources.files("mailcase") / "templates"),
                      "path": sys.path, "subject": ack.subject, "text": ack.text}))
""")


def test_an_installed_wheel_finds_its_templates_without_the_checkout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_IGNORE)  # builds leave build/ and egg-info behind: not in the checkout
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(dist), str(src)], check=True, cwd=tmp_path, timeout=300)
    [wheel] = dist.glob("mailcase-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mailcase/templates/ack.txt.j2" in names and "mailcase/templates/_promise.txt.j2" in names
    assert "mailcase/domain/migrations/env.py" in names and "mailcase/domain/migrations/script.py.mako" in names
    assert any(n.startswith("mailcase/domain/migrations/versions/0001_") for n in names)
    assert not any("share/mailcase/templates" in n for n in names)

    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
                    "--target", str(target), str(wheel)], check=True, cwd=tmp_path, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = str(target)
    # -P: no script folder or cwd on sys.path; the venv's editable finder comes after PYTHONPATH
    out = subprocess.run([sys.executable, "-P", "-c", _INSTALLED], cwd=elsewhere, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert Path(seen["file"]).is_relative_to(target)
    assert Path(seen["templates"]) == target / "mailcase" / "templates"
    assert not any(p and Path(p).resolve() == ROOT for p in seen["path"])
    assert seen["subject"] == "Printer down"
    assert "It is now case [Case #000007]" in seen["text"] and "A specialist will answer you by" in seen["text"]

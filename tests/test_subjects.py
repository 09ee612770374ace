"""Subjects (mail/subjects.py): the one reply/forward prefix pattern and the case token."""

from __future__ import annotations

import pytest

from mailcase.mail.subjects import (
    case_label,
    case_number,
    format_case_token,
    format_survey_token,
    is_forward,
    is_reply_or_forward,
    normalise_subject,
    strip_prefixes,
    survey_number,
)

#: the prefixes of the mail clients in use, as they write them
PREFIXES = ["Re", "RE", "re", "Aw", "AW", "Fwd", "FWD", "Fw", "FW", "WG", "TR", "RV", "SV", "Antw", "Vs", "VS",
            "Antwort", "RES", "ENC", "R", "I", "RIF", "Ref", "RÉF", "Doorst"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_prefix_is_a_reply_or_forward(prefix: str) -> None:
    for subject in (f"{prefix}: Printer down", f"{prefix}:Printer down", f"  {prefix} : Printer down",
                    f"{prefix}[2]: Printer down", f"{prefix} [12]: Printer down"):
        assert is_reply_or_forward(subject), subject
        assert strip_prefixes(subject) == "Printer down", subject


@pytest.mark.parametrize("subject", [
    "Re: Re: Printer down", "RE: AW: WG: Printer down", "Fwd: Re: Fw: Printer down", "SV: Vs: Antw: Printer down",
    "TR: RV: Printer down", "Re[2]: AW: Printer down", "AW:AW:AW: Printer down",
    "[EXTERNAL] Re: Printer down", "Re: [EXTERNAL] AW: Printer down", "[ext] [Acme] Fwd: RE: Printer down",
    "[Case #000123] Re: Printer down",
])
def test_repeated_prefixes_and_tags_among_them_are_stripped(subject: str) -> None:
    assert is_reply_or_forward(subject)
    assert strip_prefixes(subject) == "Printer down"


@pytest.mark.parametrize("subject", [
    "Printer down", "Regarding the printer", "Rev: 2 of the manual", "Trouble: printer", "I need help",
    "Reply needed", "Fwd printer settings", "[EXTERNAL] Printer down", "[Case #000123] Printer down",
    "Printer down Re: again", "Undeliverable: Printer down", "", "Re", "Re Printer down",
])
def test_a_subject_without_a_prefix_is_not_a_reply(subject: str) -> None:
    assert not is_reply_or_forward(subject)
    assert strip_prefixes(subject) == subject


@pytest.mark.parametrize("subject", [
    "Fwd: Printer down", "FW: Printer down", "WG: Printer down", "TR: Printer down", "RV: Printer down",
    "ENC: Printer down", "I: Printer down", "Doorst: Printer down", "VS: Printer down", "Fwd[2]: Printer down",
    "[EXTERNAL] Fw: Printer down", "Fwd: Re: Printer down",
])
def test_a_forward(subject: str) -> None:
    assert is_forward(subject)


@pytest.mark.parametrize("subject", [
    "Re: Printer down", "AW: Printer down", "SV: Printer down", "Antw: Printer down", "Re: Fwd: Printer down",
    "Printer down", "Fwd printer settings", "Trouble: printer",
])
def test_not_a_forward(subject: str) -> None:
    assert not is_forward(subject)


def test_normalised_subject() -> None:
    assert normalise_subject("Re: AW: WG: [EXTERNAL] Printer   DOWN") == "printer down"
    assert normalise_subject("Fwd: [Case #000123] printer down") == "printer down"
    assert normalise_subject("SV: Re[2]: printer down") == "printer down"
    assert normalise_subject("[EXTERNAL] RE: [Acme] Fw: Printer down") == "printer down"


def test_the_case_token_is_written_and_read_in_one_format() -> None:
    assert case_label(123) == "#000123"
    assert format_case_token(123) == "[Case #000123]"
    assert format_survey_token(7) == "[Survey #000007]"
    for n in (1, 123, 999999, 1234567):
        assert case_number(f"Re: {format_case_token(n)} Printer down") == n
        assert survey_number(f"{format_survey_token(n)} How did we do?") == n
    assert case_number(format_survey_token(5)) is None and survey_number(format_case_token(5)) is None

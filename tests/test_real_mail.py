"""Charsets and MIME structure, each checked on real mail.

Samples come from the Zammad corpus (tests/corpus/zammad) where it has one,
otherwise from tests/samples (sources and licences in its README.md).
"""

from __future__ import annotations

import hashlib
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

from test_corpus_zammad import zammad_expectations

from mailcase.mail.parse.message import parse_email
from mailcase.mail.parse.result import Attachment, ParsedEmail

HERE = Path(__file__).parent
CORPUS = HERE / "corpus" / "zammad"
SAMPLES = HERE / "samples"


def corpus(name: str) -> ParsedEmail:
    return parse_email((CORPUS / f"{name}.box").read_bytes())


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def attachment(parsed: ParsedEmail, name: str) -> Attachment:
    found = [a for a in parsed.attachments if a.name == name]
    assert found, f"no attachment {name!r} in {[a.name for a in parsed.attachments]}"
    return found[0]


# -- windows-1252 that says ISO-8859-1 (or US-ASCII) -------------------------------------


def test_windows_1252_quotes_in_a_real_mail() -> None:
    # Gmail, quoted-printable: =91 =92 are ‘ ’, =A0 a no-break space
    p = parse_email(sample("git-list-windows-1252-quotes.eml"))
    assert "On the other hand, \u2018git pull\u2019 is a little different." in p.text_body
    assert "it\u2019s interruptible" in p.text_body and "I don\u2019t know." in p.text_body


def test_windows_1252_labelled_iso_8859_1_or_us_ascii_is_read_as_windows_1252() -> None:
    # The same real bytes under the labels mailers wrongly put on them: in
    # ISO-8859-1, 0x80-0x9F are C1 controls no mail means (WHATWG Encoding
    # Standard maps both labels to windows-1252)
    raw = sample("git-list-windows-1252-quotes.eml")
    for label in (b"ISO-8859-1", b"iso-8859-1", b"us-ascii"):
        p = parse_email(raw.replace(b"charset=windows-1252", b"charset=" + label))
        assert "\u2018git reset --merge\u2019 to recover" in p.text_body
        assert not any("\x80" <= c <= "\x9f" for c in p.text_body)


def test_utf8_labelled_iso_8859_1_by_a_gateway_is_read_as_utf8() -> None:
    # sendmail added "charset=ISO-8859-1" to 8-bit text it could not label
    # (see the mail's X-Warning); the bytes are UTF-8
    p = parse_email(sample("git-list-utf8-labelled-iso-8859-1.eml"))
    assert p.text_body.startswith("Karl Hasselstr\u00f6m <kha@treskal.com> wrote:")


# -- ISO-2022-JP ----------------------------------------------------------------------------


def test_iso_2022_jp_with_microsoft_extensions() -> None:
    # ① (NEC row 13) is cp50221, not ISO-2022-JP proper: re-read through cp932
    assert corpus("mail099").text_body == "\u3000" * 5 + "①１都３県の鯵と、"


def test_iso_2022_jp_subjects_and_bodies() -> None:
    assert corpus("mail091").headers.subject == "メルマガ解除"
    assert corpus("mail091").text_body == "このアドレスへのメルマガを解除してください。"
    p = corpus("mail093")  # ISO-2022-JP HTML body, raw Shift_JIS subject
    assert "先着100施設限定" in p.text_body and "無料バージョン" in p.text_body


# -- GB2312 / GBK -----------------------------------------------------------------------------


def test_gb2312_subject_and_body() -> None:
    p = corpus("mail016")
    assert p.headers.subject == "【 直通美国排名第49大学 成功后付费 】"
    assert "再次祝福您工作顺利，婚姻美满，家庭幸福，生意兴隆。" in p.text_body


# -- raw 8-bit headers ------------------------------------------------------------------------


def test_raw_8bit_gb2312_subject() -> None:
    # no encoded-word: the bytes are GB2312, declared only by a part inside
    assert corpus("mail046").headers.subject == "转发：整体提升企业服务水平"


def test_raw_8bit_shift_jis_subject_next_to_an_iso_2022_jp_label() -> None:
    assert corpus("mail093").headers.subject == "ツール"


def test_raw_8bit_gb2312_attachment_name() -> None:
    p = corpus("mail015")
    assert [a.name for a in p.attachments] == ["绩效管理,究竟谁错了.xls"]


# -- RFC 2231 parameters -------------------------------------------------------------------------


def test_rfc2231_utf8_filename() -> None:
    p = corpus("mail081")
    assert attachment(p, "Erklärung.txt").size == 12


def test_rfc2231_iso_8859_1_and_mislabelled_us_ascii_filenames() -> None:
    p = corpus("mail073")
    attachment(p, "Bestellbestätigung_BK18052795.jpg")
    # us-ascii''...W%F6lbung: an 8-bit byte under a 7-bit label is windows-1252
    attachment(p, "Forex Platte ohne Wölbung.jpg")


def test_rfc2231_continuations() -> None:
    p = parse_email(sample("apple-mail-rfc2231-continuation.eml"))
    assert [a.name for a in p.attachments] == ["かきくけこ" * 5 + ".txt"]
    assert attachment(p, "かきくけこ" * 5 + ".txt").sha256 == hashlib.sha256(b"this is the data\n").hexdigest()


# -- missing MIME boundaries -----------------------------------------------------------------------


def test_missing_start_boundary_keeps_the_text() -> None:
    p = corpus("mail105")  # multipart/mixed whose boundary never appears
    assert p.text_body.startswith("äöüß ad asd\n\n-Martin")
    assert "multipart body without its boundary; read as text" in p.defects
    assert p.attachments == ()


def test_missing_close_boundary_keeps_the_last_part() -> None:
    p = corpus("mail087")
    assert "CloseBoundaryNotFoundDefect" in p.defects
    assert "Sie haben soeben ein neues Fax" in p.text_body
    assert attachment(p, "fax_1234.pdf").content_type == "application/pdf"


# -- TNEF (winmail.dat) ------------------------------------------------------------------------------


def _outlook_mail(tnef: bytes, ctype: str = "ms-tnef") -> bytes:
    msg = MIMEMultipart()
    msg["From"] = "Outlook User <outlook.user@example.org>"
    msg["To"] = "support@support.example"
    msg["Subject"] = "files attached"
    msg["Date"] = "Mon, 23 Nov 2026 08:00:00 -0500"
    msg["Message-ID"] = "<tnef-sample@example.org>"
    msg.attach(MIMEText("See the attached files.\n", "plain", "us-ascii"))
    part = MIMEApplication(tnef, ctype, name="winmail.dat")
    part.add_header("Content-Disposition", "attachment", filename="winmail.dat")
    msg.attach(part)
    return msg.as_bytes()


def test_winmail_dat_lists_the_files_inside() -> None:
    tnef = sample("winmail-two-files.dat")
    p = parse_email(_outlook_mail(tnef))
    winmail = attachment(p, "winmail.dat")
    assert winmail.contents == ("AUTHORS", "README")
    assert winmail.as_dict()["contents"] == ["AUTHORS", "README"]
    assert winmail.size == len(tnef)
    assert p.text_body == "See the attached files."


def test_winmail_dat_found_by_name_with_non_ascii_inner_names() -> None:
    p = parse_email(_outlook_mail(sample("winmail-umlaut.dat"), ctype="octet-stream"))
    assert attachment(p, "winmail.dat").contents == (
        "TBZ PARIV GmbH.jpg", "image003.jpg", "UmlautAnhang-äüö.txt")


def test_damaged_winmail_dat_is_a_defect_not_an_error() -> None:
    tnef = sample("winmail-two-files.dat")
    p = parse_email(_outlook_mail(tnef[:40]))  # cut short: read as far as it goes
    assert attachment(p, "winmail.dat").contents == ()
    p = parse_email(_outlook_mail(tnef[40:]))  # no TNEF signature
    assert attachment(p, "winmail.dat").contents == ()
    assert "winmail.dat unreadable: ValueError" in p.defects


# -- an attached mail (message/rfc822) ---------------------------------------------------------------


def test_forwarded_mails_are_attachments_and_stay_out_of_the_body() -> None:
    p = corpus("mail014")  # a reply with two mails attached
    assert p.text_body == "äöüß ad asd\n\n-Martin\n\n--\nOld programmers never die. They just branch to a new address."
    assert [(a.name, a.content_type) for a in p.attachments] == [
        ("Neue Anfrage erstellt - 33284.eml", "message/rfc822"),
        ("Call: HW-Anforderung; Best-nr.47524152.eml", "message/rfc822"),
    ]


def test_attached_mail_named_by_its_raw_8bit_subject() -> None:
    p = corpus("mail046")  # SpamAssassin report with the original (GB2312) mail attached
    assert p.text_body.startswith('Software zur Erkennung von "Spam"')
    assert attachment(p, "转发：整体提升企业服务水平.eml").content_type == "message/rfc822"


def test_attached_mail_lists_its_own_attachments() -> None:
    p = corpus("mail069")
    inner = [a for a in p.attachments if a.content_type == "message/rfc822"]
    assert len(inner) == 1 and inner[0].contents == ("znzsrqafw.png",)
    assert "png" not in p.text_body.lower()


def test_bounced_mail_text_stays_out_of_the_bounce_body() -> None:
    p = corpus("mail063")
    assert "hello 123 äöüß" not in p.text_body
    assert attachment(p, "hello 123 äöüß.eml").content_type == "message/rfc822"


# -- uuencode ----------------------------------------------------------------------------------------


def test_uuencoded_file_in_a_text_body_becomes_an_attachment() -> None:
    p = corpus("mail025")
    csv = attachment(p, "rulesets-report.csv")
    # b"RULESET_ID;NAME;ACTIV;RUN_MODE;AUDIT_MODIFY_DATE\n387;DP DHL JOIN - EN : ..."
    assert (csv.content_type, csv.size) == ("text/csv", 100)
    assert csv.sha256 == "204b9d84a10833d9ca3fc995399cba97575cad5b4e416401b5a23f1e2d55cd28"
    assert "begin 644" not in p.text_body and "M4E5,15-%" not in p.text_body


def test_x_uuencode_transfer_encoding() -> None:
    name = "mail078-content_transfer_encoding_x_uuencode"
    p = corpus(name)
    expected = zammad_expectations(name)["attachments"][0]["data"]
    pkg = attachment(p, "PGP_Cmts_on_12-14-01_Pkg.txt")
    assert pkg.sha256 == hashlib.sha256(str(expected).encode()).hexdigest()
    assert "Attached are the comments of the Public Generating Pool." in p.text_body


"""A deterministic corpus of realistic support mails for the ingest benchmark.

Mail ``i`` of seed ``s`` depends only on ``(s, i)`` (its own ``random.Random``
seeded with a string, which hashes with SHA-512 and so ignores
PYTHONHASHSEED), so a corpus of 2,000 is the first 2,000 mails of a corpus of
10,000 and both are cached under one folder in /tmp, one ``.eml`` per mail
(CRLF line ends, as IMAP serves them).

What is in it (rough shares):

* bodies: plain text ~45%, HTML only ~15%, multipart/alternative ~40%
  (Outlook-style HTML with a style block, Gmail-style HTML, a few with an
  inline logo in multipart/related);
* ~15% with one to three attachments of 20-500 KB (PDF/PNG/ZIP-like random
  bytes, base64), sizes from a triangular distribution (mode 100 KB, mean
  ~207 KB), some with RFC 2231 non-ASCII file names;
* ~35% replies: In-Reply-To, References (the thread's chain) and quoted text;
* RFC 2047 encoded subjects and display names in UTF-8 and ISO-8859-1;
* a few non-UTF-8 bodies: windows-1252, ISO-8859-15, GB2312, ISO-2022-JP
  (and ISO-8859-1);
* ~300 customer domains plus free-mail providers; headers as real mail
  carries them: Received chain, DKIM-Signature, Authentication-Results,
  ARC, X-Mailer/User-Agent, Thread-Index, X-MS-Exchange-*, spam headers.

Built with ``email.mime`` (policy compat32) so the charset and transfer
encoding of every part and encoded-word is chosen here, as real mailers do.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import string
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from email import charset as email_charset
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import cast

#: bump when the generator changes: old caches are then ignored
VERSION = 3
DEFAULT_SEED = 20261123
CACHE_ROOT = Path(os.environ.get("MAILCASE_BENCH_CACHE", "/tmp/mailcase-bench-corpus"))
SUPPORT = ("Example Support", "support@support.example")
#: mail 0's Date; one mail every ~7 minutes after it (10,000 mails: ~7 weeks)
START = datetime(2026, 9, 1, 13, 0, tzinfo=UTC)

# -- people and places -----------------------------------------------------------

FIRST_ASCII = [
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Chris", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty",
    "Mark", "Sandra", "Paul", "Ashley", "Steven", "Kimberly", "Andrew", "Emily", "Kevin",
    "Donna", "Brian", "Michelle", "George", "Carol", "Priya", "Rahul", "Wei", "Ahmed",
    "Fatima", "Olga", "Ivan", "Lars", "Ingrid", "Pieter",
]
LAST_ASCII = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Wilson",
    "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson", "White",
    "Harris", "Clark", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Hill", "Green", "Adams", "Nelson", "Baker", "Hall", "Campbell", "Mitchell",
    "Patel", "Sharma", "Chen", "Nguyen", "Kowalski", "Jansen", "Larsen", "Novak",
]
#: names that need an encoded-word; the second field says whether Latin-1 can hold them
NAMES_NON_ASCII = [
    ("José García", True), ("Zoë Lefèvre", True), ("Jürgen Müller", True),
    ("François Dubois", True), ("Åsa Lindström", True), ("Søren Østergaard", True),
    ("Renée Bélanger", True), ("Björn Järvinen", True), ("Inês Gonçalves", True),
    ("Łukasz Wiśniewski", False), ("Dvořák Tomáš", False), ("Ольга Смирнова", False),
    ("王伟", False), ("李娜", False), ("山田太郎", False), ("佐藤花子", False),
    ("Müller-Lüdenscheidt, Hans", True), ("Ömer Çelik", False), ("Νίκος Παπαδόπουλος", False),
]
COMPANY_WORDS = [
    "acme", "globex", "initech", "umbrella", "stark", "wayne", "hooli", "vandelay", "wonka",
    "cyberdyne", "soylent", "tyrell", "gringotts", "oscorp", "aperture", "massive", "dynamic",
    "north", "blue", "river", "summit", "pioneer", "harbor", "maple", "granite", "silver",
    "clinic", "medical", "health", "care", "family", "valley", "lakeside", "metro", "prime",
]
COMPANY_SUFFIX = ["", "-group", "-health", "-med", "-clinic", "-partners", "-llc", "-inc", "-care"]
TLDS = [".com", ".com", ".com", ".net", ".org", ".us", ".de", ".fr", ".co.uk", ".ca", ".nl"]
FREEMAIL = [
    ("gmail.com", "gmail"), ("outlook.com", "outlook"), ("hotmail.com", "outlook"),
    ("yahoo.com", "yahoo"), ("web.de", "webde"), ("gmx.net", "webde"), ("qq.com", "qq"),
    ("yahoo.co.jp", "yahoojp"), ("icloud.com", "apple"), ("protonmail.com", "proton"),
]


def _company_domain(k: int) -> str:
    r = random.Random(f"domain:{k}")
    return r.choice(COMPANY_WORDS) + r.choice(COMPANY_WORDS[::-1]) + r.choice(COMPANY_SUFFIX) + r.choice(TLDS)


DOMAINS = [_company_domain(k) for k in range(300)]

# -- text --------------------------------------------------------------------------

PRODUCT_AREAS = [
    "claims export", "eligibility check", "the scheduler", "invoice batch", "patient portal",
    "the ERA import", "user permissions", "the reporting module", "the API", "SSO login",
    "the mobile app", "fee schedules", "statement printing", "the clearinghouse upload",
]
SUBJECTS = [
    "Cannot log in to {area}", "Error when running {area}", "{area} is very slow today",
    "Question about {area}", "URGENT: {area} down for all users", "{area} shows wrong totals",
    "Help needed with {area}", "Request: new user for {area}", "Problem after update - {area}",
    "{area}: error code {code}", "Password reset does not arrive", "Data missing in {area}",
    "How do I configure {area}?", "Timeout in {area} since this morning",
]
SUBJECTS_NON_ASCII = [
    ("Problème d'accès à {area}", True), ("Fehler beim Export – dringend", False),
    ("Überweisung fehlgeschlagen: {area}", True), ("Consulta sobre facturación ({area})", True),
    ("{area} — zeigt falsche Summen", False), ("ログインできません", False),
    ("无法登录系统，请帮忙", False), ("Ошибка при выгрузке", False), ("Größenänderung €", False),
    ("Réinitialisation du mot de passe", True), ("Åtkomst nekad i {area}", True),
]
SENTENCES = [
    "Since this morning none of our users can open {area}.",
    "We get the error code {code} every time we try to run {area}.",
    "I already restarted the workstation and cleared the browser cache, it did not help.",
    "This is blocking our billing staff, so please treat it as urgent.",
    "The problem started right after the update on Friday evening.",
    "Attached you will find a screenshot of the message and the log file.",
    "Could you please tell us whether this is a known issue and when it will be fixed?",
    "We followed the knowledge base article but step 4 does not match what we see.",
    "Our administrator is on leave this week, so I am writing on her behalf.",
    "The totals in the monthly report differ from the figures in the ledger by about 3%.",
    "When I click Save nothing happens, and after a minute the page shows a timeout.",
    "Is there a way to export the data as CSV instead of PDF?",
    "We need a new login for a colleague who started on Monday.",
    "The upload to the clearinghouse fails with 'connection reset by peer'.",
    "Please call me back at the number below if that is easier.",
    "It works on one workstation but not on the other three.",
    "We are on version 12.4.2 and running on Windows Server 2019.",
    "Last month the same procedure worked fine.",
    "I have tried with Chrome and Edge, same result.",
    "Thank you for your help with the previous case, that one is solved.",
]
FR = ("Bonjour, depuis ce matin nous ne pouvons plus accéder au module. "
      "Le message d'erreur indique « accès refusé ». Pourriez-vous vérifier ? Merci d'avance, cordialement.")
DE = ("Guten Tag, seit heute früh schlägt der Export fehl. Die Größe der Datei beträgt 0 Byte "
      "und die Übertragung bricht ab. Können Sie das bitte prüfen? Mit freundlichen Grüßen")
ES = ("Hola, el módulo de facturación muestra un error al guardar. ¿Podrían revisarlo? "
      "Adjunto la captura de pantalla. Saludos cordiales")
EURO = ("Bonjour, la facture de 1 250 € n'a pas été importée. Œuvre de Ÿves: “citation” – "
        "le total affiché est 1 249,50 €. Merci.")
EURO15 = ("Bonjour, la facture de 1 250 € n'a pas été importée. Œuvre de Ÿves : « citation » - "
          "le total affiché est 1 249,50 €. Merci.")
ZH = "您好，从今天早上开始我们无法登录系统。错误代码显示为连接超时。请尽快帮忙处理，谢谢！"
JA = "お世話になっております。本日朝からシステムにログインできません。エラーコードは接続タイムアウトです。至急ご確認をお願いいたします。"
SIGNATURES = [
    "\n-- \n{name}\n{title}\n{company}\nPhone: +1 {phone}\n",
    "\nBest regards,\n{name}\n",
    "\nThanks,\n{name}\n{company} | {title}\n",
    "\nKind regards\n\n{name}\n{title}, {company}\nTel. {phone}\n\nCONFIDENTIALITY NOTICE: This e-mail"
    " and any attachments are confidential and may be privileged. If you are not the intended"
    " recipient, please notify the sender immediately and delete it.\n",
    "\nSent from my iPhone\n",
]
TITLES = ["Office Manager", "Billing Lead", "IT Administrator", "Practice Manager", "Accountant",
          "Front Desk", "Head of Operations"]
MAILERS = [
    ("outlook", "Microsoft Outlook 16.0"), ("outlook", "Microsoft Outlook 15.0"),
    ("thunderbird", "Mozilla Thunderbird"), ("apple", "Apple Mail (2.3774.300.61.1.2)"),
    ("gmail", None), ("webde", None), ("yahoo", None), ("proton", None),
]


def _code(r: random.Random) -> str:
    return f"{r.choice('EWX')}{r.randrange(100, 9999)}"


def _fmt(r: random.Random, s: str) -> str:
    s = s.format(area=r.choice(PRODUCT_AREAS), code=_code(r))
    return s[:1].upper() + s[1:]


# -- pure per-index facts (a reply needs its parent's without generating it) --------


def _base(seed: int, j: int) -> dict[str, object]:
    """Who sent mail ``j``, about what, its Message-ID and its thread."""
    r = random.Random(f"{seed}:{j}:base")
    if r.random() < 0.8:
        domain, provider = r.choice(DOMAINS[: 60 + (j % 240)]), r.choice(["outlook", "outlook", "gmail", "thunderbird", "apple"])
    else:
        domain, provider = r.choice(FREEMAIL)
    if r.random() < 0.25:
        name, latin1 = r.choice(NAMES_NON_ASCII)
    else:
        name, latin1 = f"{r.choice(FIRST_ASCII)} {r.choice(LAST_ASCII)}", True
    ascii_name = unicodedata.normalize("NFKD", name.split(",")[0]).encode("ascii", "ignore").decode()
    local = "".join(c for c in ascii_name.lower().replace(" ", ".") if c in string.ascii_lowercase + ".")
    local = (local.strip(".") or f"user{r.randrange(1000)}") + ("" if r.random() < 0.7 else str(r.randrange(10, 99)))
    if r.random() < 0.18:
        subject, subj_latin1 = r.choice(SUBJECTS_NON_ASCII)
        subject = _fmt(r, subject)
    else:
        subject, subj_latin1 = _fmt(r, r.choice(SUBJECTS)), True
    token = hashlib.sha256(f"{seed}:{j}".encode()).hexdigest()
    msgid_host = domain if provider != "outlook" else domain.split(".")[0].upper() + "PR05MB" + token[:4].upper() + ".namprd05.prod.outlook.com"
    if provider == "gmail":
        msgid = f"<CA{token[:10]}+{token[10:30]}=={token[30:36]}@mail.gmail.com>"
    else:
        msgid = f"<{token[:8]}.{token[8:16]}.{j}@{msgid_host}>"
    return {
        "name": name, "name_latin1": latin1, "addr": f"{local}@{domain}", "domain": domain,
        "provider": provider, "subject": subject, "subject_latin1": subj_latin1, "msgid": msgid,
        "date": START + timedelta(seconds=420 * j + r.randrange(0, 400)),
    }


def _parent(seed: int, i: int) -> int | None:
    r = random.Random(f"{seed}:{i}:thread")
    if i < 5 or r.random() >= 0.35:
        return None
    return r.randrange(max(0, i - 300), i)


def _thread(seed: int, i: int) -> list[int]:
    """Ancestors of mail i, root first (References), bounded."""
    chain: list[int] = []
    j = _parent(seed, i)
    while j is not None and len(chain) < 12:
        chain.append(j)
        j = _parent(seed, j)
    return chain[::-1]


def _root_subject(seed: int, i: int) -> tuple[str, bool]:
    chain = _thread(seed, i)
    b = _base(seed, chain[0] if chain else i)
    return str(b["subject"]), bool(b["subject_latin1"])


def _body_text(seed: int, j: int, name: str, company: str) -> tuple[str, str]:
    """(text, charset) of mail j's own words (not counting quoted text)."""
    r = random.Random(f"{seed}:{j}:body")
    roll = r.random()
    if roll < 0.012:
        return FR + "\n\n" + EURO + "\n", "windows-1252"
    if roll < 0.022:
        return EURO15 + "\n\n" + FR + "\n", "iso-8859-15"
    if roll < 0.032:
        return DE + "\n", "iso-8859-1"
    if roll < 0.040:
        return ZH + "\n" + ZH[:20] + "\n", "gb2312"
    if roll < 0.048:
        return JA + "\n" + JA[:30] + "\n", "iso-2022-jp"
    greeting = r.choice(["Hello,", "Hi support team,", "Dear Support,", "Good morning,", "Hi,"])
    paras = []
    for _ in range(r.choice([1, 1, 2, 2, 3, 4])):
        paras.append(" ".join(_fmt(r, r.choice(SENTENCES)) for _ in range(r.randrange(1, 6))))
    if r.random() < 0.1:
        paras.append(r.choice([FR, DE, ES]))
    if r.random() < 0.15:
        paras.append("Log excerpt:\n" + "\n".join(
            f"2026-11-{r.randrange(1, 28):02d} {r.randrange(24):02d}:{r.randrange(60):02d}:{r.randrange(60):02d}"
            f" ERROR [{r.choice(['db', 'io', 'net', 'auth'])}] {_code(r)} {r.choice(SENTENCES)[:60]}"
            for _ in range(r.randrange(5, 60))
        ))
    sig = r.choice(SIGNATURES).format(
        name=name, title=r.choice(TITLES), company=company,
        phone=f"({r.randrange(200, 999)}) {r.randrange(200, 999)}-{r.randrange(1000, 9999)}",
    )
    text = greeting + "\n\n" + "\n\n".join(paras) + "\n" + sig
    charset = "utf-8" if any(ord(c) > 127 for c in text) else "us-ascii"
    return text, charset


# -- building ----------------------------------------------------------------------

_STYLE = """<style><!--
/* Font Definitions */
@font-face {font-family:"Cambria Math"; panose-1:2 4 5 3 5 4 6 3 2 4;}
@font-face {font-family:Calibri; panose-1:2 15 5 2 2 2 4 3 2 4;}
@font-face {font-family:Aptos;}
/* Style Definitions */
p.MsoNormal, li.MsoNormal, div.MsoNormal {margin:0in; font-size:11.0pt; font-family:"Calibri",sans-serif;}
a:link, span.MsoHyperlink {mso-style-priority:99; color:#0563C1; text-decoration:underline;}
span.EmailStyle17 {mso-style-type:personal-compose; font-family:"Calibri",sans-serif; color:windowtext;}
.MsoChpDefault {mso-style-type:export-only; font-size:10.0pt; mso-ligatures:none;}
@page WordSection1 {size:8.5in 11.0in; margin:1.0in 1.0in 1.0in 1.0in;}
div.WordSection1 {page:WordSection1;}
--></style><!--[if gte mso 9]><xml>
<o:shapedefaults v:ext="edit" spidmax="1026" />
</xml><![endif]--><!--[if gte mso 9]><xml>
<o:shapelayout v:ext="edit">
<o:idmap v:ext="edit" data="1" />
</o:shapelayout></xml><![endif]-->"""


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _html(text: str, provider: str, quoted: str | None) -> str:
    paras = [p for p in text.split("\n\n") if p.strip()]
    if provider == "outlook":
        body = "".join(
            '<p class="MsoNormal"><span style="font-size:11.0pt">'
            + "<br>\n".join(_esc(line) for line in p.split("\n"))
            + '<o:p></o:p></span></p>\n<p class="MsoNormal"><o:p>&nbsp;</o:p></p>\n'
            for p in paras
        )
        q = ""
        if quoted:
            q = ('<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0in 0in 0in">'
                 '<p class="MsoNormal"><b>From:</b> Example Support<br><b>Sent:</b> earlier<br></p></div>\n'
                 + "".join(f'<p class="MsoNormal">{_esc(line)}<o:p></o:p></p>\n' for line in quoted.split("\n")))
        return ('<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" '
                'xmlns:w="urn:schemas-microsoft-com:office:word" xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" '
                'xmlns="http://www.w3.org/TR/REC-html40"><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
                '<meta name="Generator" content="Microsoft Word 15 (filtered medium)">' + _STYLE
                + '</head><body lang="EN-US" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">'
                '<div class="WordSection1">\n' + body + q + "</div></body></html>\n")
    body = "".join("<div>" + "<br>".join(_esc(line) for line in p.split("\n")) + "</div><div><br></div>" for p in paras)
    q = ""
    if quoted:
        q = ('<div class="gmail_quote"><div dir="ltr" class="gmail_attr">On earlier, Example Support wrote:<br></div>'
             '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">'
             + "<br>".join(_esc(line) for line in quoted.split("\n")) + "</blockquote></div>")
    return f'<div dir="ltr">{body}</div>{q}\n'


def _charset(name: str, r: random.Random) -> Charset | str:
    if name in ("us-ascii", "iso-2022-jp", "gb2312"):
        return name  # 7bit / the stdlib's defaults (base64 for GB2312)
    cs = Charset(name)
    cs.body_encoding = QP if r.random() < 0.7 else email_charset.BASE64
    return cs


def _text_part(text: str, subtype: str, charset: str, r: random.Random) -> MIMEText:
    try:
        text.encode(charset)
    except UnicodeEncodeError:
        charset = "utf-8"
    return MIMEText(text, subtype, _charset(charset, r))  # type: ignore[arg-type]  # a Charset works; typeshed says str


def _attachment(r: random.Random, k: int) -> MIMEBase:
    size = int(r.triangular(20, 500, 100) * 1024)
    kind = r.choices(["pdf", "png", "zip", "jpg", "xlsx"], weights=[40, 25, 15, 10, 10])[0]
    magic = {"pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
             "zip": b"PK\x03\x04\x14\x00\x06\x00", "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
             "xlsx": b"PK\x03\x04\x14\x00\x06\x00\x08\x00"}[kind]
    data = magic + r.randbytes(size - len(magic))
    if kind == "png":
        part: MIMEBase = MIMEImage(data, "png")
    elif kind == "jpg":
        part = MIMEImage(data, "jpeg")
    else:
        sub = {"pdf": "pdf", "zip": "zip",
               "xlsx": "vnd.openxmlformats-officedocument.spreadsheetml.sheet"}[kind]
        part = MIMEApplication(data, sub)
    stem = r.choice(["screenshot", "error_log", "report_november", "invoice", "export", "Scan",
                     "Rechnung_März", "capture_écran", "image00" + str(k)])
    filename = f"{stem}{'' if k == 1 else '_' + str(k)}.{kind}"
    if all(ord(c) < 128 for c in filename):
        part.add_header("Content-Disposition", "attachment", filename=filename)
        part.set_param("name", filename)
    else:
        part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", filename))
        part.set_param("name", str(Header(filename, "utf-8").encode()))
    if r.random() < 0.5:
        part["Content-ID"] = f"<{kind}{k}.{r.getrandbits(40):x}@example>"
    return part


def _boundary(r: random.Random) -> str:
    return f"----=_Part_{r.randrange(10**6)}_{r.getrandbits(48):012x}.{r.getrandbits(40)}"


def _encoded(value: str, latin1: bool, r: random.Random) -> str | Header:
    if all(ord(c) < 128 for c in value):
        return value
    if latin1 and r.random() < 0.4:
        return Header(value, "iso-8859-1")
    return Header(value, "utf-8")


def _received_chain(r: random.Random, domain: str, date: datetime, ip: str) -> list[str]:
    """Received: fields, topmost (our own server's, added last) first."""
    mx = f"mx{r.randrange(1, 4)}.support.example"
    out_host = f"mail-{r.choice(['eopbgr', 'sor-f41', 'mo', 'out'])}{r.randrange(100, 999)}.{domain}"
    t = date
    hops = []  # from the sender's side to ours
    for _ in range(r.randrange(1, 5)):
        t += timedelta(seconds=r.randrange(0, 3))
        inner = f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}"
        hops.append(f"from SRV{r.randrange(10, 99)}.internal.{domain} ([{inner}])\r\n\tby {out_host}"
                    f" with Microsoft SMTP Server (version=TLS1_2,\r\n\t cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)"
                    f" id 15.20.{r.randrange(1000, 9999)}.{r.randrange(10, 99)}; {format_datetime(t)}")
    qid = "".join(r.choice(string.ascii_uppercase + string.digits) for _ in range(12))
    t += timedelta(seconds=r.randrange(0, 5))
    hops.append(f"from {out_host} ({out_host} [{ip}])\r\n\tby {mx} (Postfix) with ESMTPS id {qid}\r\n\t"
                f"(version=TLS1_3 cipher=TLS_AES_256_GCM_SHA384 bits=256)\r\n\t"
                f"for <support@support.example>; {format_datetime(t)}")
    t += timedelta(seconds=r.randrange(0, 2))
    hops.append(f"from {mx} (localhost [127.0.0.1])\r\n\tby imap.support.example (Dovecot) with LMTP id "
                f"{r.getrandbits(64):016x}\r\n\tfor <support@support.example>; {format_datetime(t)}")
    return hops[::-1]


def _b64(r: random.Random, n: int) -> str:
    return base64.b64encode(r.randbytes(n)).decode()


def build(seed: int, i: int) -> bytes:
    """Mail ``i`` of the corpus, as bytes with CRLF line ends."""
    b = _base(seed, i)
    r = random.Random(f"{seed}:{i}:build")
    name, addr, domain, provider = str(b["name"]), str(b["addr"]), str(b["domain"]), str(b["provider"])
    date = cast(datetime, b["date"])
    tz = timezone(timedelta(hours=r.choice([-8, -7, -6, -5, -5, -5, -4, 0, 1, 2, 5.5, 8, 9])))
    local_date = date.astimezone(tz)
    company = domain.split(".")[0].replace("-", " ").title()
    text, charset = _body_text(seed, i, name, company)

    chain = _thread(seed, i)
    quoted = None
    subject, subj_latin1 = str(b["subject"]), bool(b["subject_latin1"])
    if chain:
        root_subject, subj_latin1 = _root_subject(seed, i)
        subject = r.choice(["Re: ", "RE: ", "AW: ", "Re: Re: ", "Re: [Case #00%04d] " % (chain[0] % 9999)]) + root_subject
        pb = _base(seed, chain[-1])
        ptext, _ = _body_text(seed, chain[-1], str(pb["name"]), company)
        if r.random() < 0.8:
            quoted = "\n".join(("> " + line) if line else ">" for line in ptext.split("\n"))
            header = f"On {format_datetime(cast(datetime, pb['date']))}, {pb['name']} <{pb['addr']}> wrote:"
            quoted = header + "\n" + quoted
            if charset in ("us-ascii",) and any(ord(c) > 127 for c in quoted):
                charset = "utf-8"
            try:
                (text + quoted).encode({"gb2312": "gb2312", "iso-2022-jp": "iso-2022-jp"}.get(charset, charset))
            except UnicodeEncodeError:
                charset = "utf-8"
            text = text + "\n" + quoted + "\n"

    # body structure
    roll = r.random()
    kind = "plain" if roll < 0.45 else ("html" if roll < 0.60 else "alternative")
    if charset in ("gb2312", "iso-2022-jp"):
        kind = "plain"  # these mailers send text
    html_provider = "outlook" if provider == "outlook" else "gmail"
    if kind == "plain":
        body: MIMEBase = _text_part(text, "plain", charset, r)
    else:
        own = text if quoted is None else text[: len(text) - len(quoted) - 2]
        html = _html(own, html_provider, quoted)
        html_cs = "utf-8" if any(ord(c) > 127 for c in html) else "us-ascii"
        html_part: MIMEBase = _text_part(html, "html", html_cs, r)
        if r.random() < 0.12:
            related = MIMEMultipart("related", boundary=_boundary(r))
            related.attach(html_part)
            logo = MIMEImage(b"\x89PNG\r\n\x1a\n" + r.randbytes(r.randrange(3000, 15000)), "png")
            logo.add_header("Content-Disposition", "inline", filename="image001.png")
            logo["Content-ID"] = "<image001.png@01DB3C7A.5F3E2A10>"
            related.attach(logo)
            html_part = related
        if kind == "html":
            body = html_part
        else:
            body = MIMEMultipart("alternative", boundary=_boundary(r))
            body.attach(_text_part(text, "plain", charset, r))
            body.attach(html_part)

    if r.random() < 0.15:
        msg: MIMEBase = MIMEMultipart("mixed", boundary=_boundary(r))
        msg.attach(body)
        for n in range(1, r.choices([1, 2, 3], weights=[80, 15, 5])[0] + 1):
            msg.attach(_attachment(r, n))
    else:
        msg = body

    # headers, in the order a delivered mail has them
    ip = f"{r.choice([40, 52, 104, 209, 198, 185, 80, 91])}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
    headers: list[tuple[str, str | Header]] = [("Return-Path", f"<{addr}>"), ("Delivered-To", "support@support.example")]
    headers += [("Received", h) for h in _received_chain(r, domain, date, ip)]
    dkim_ok = r.random() < 0.9
    headers.append(("Authentication-Results", (
        f"mx1.support.example;\r\n\tdkim={'pass' if dkim_ok else 'fail'} (2048-bit key; unprotected)"
        f" header.d={domain} header.i=@{domain} header.a=rsa-sha256 header.s=selector1 header.b={_b64(r, 6)};\r\n\t"
        f"spf={'pass' if r.random() < 0.92 else 'softfail'} (mx1.support.example: domain of {addr} designates {ip} as permitted sender)"
        f" smtp.mailfrom={addr};\r\n\tdmarc={'pass' if dkim_ok else 'fail'} (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from={domain}")))
    if r.random() < 0.3:
        headers.append(("ARC-Seal", f"i=1; a=rsa-sha256; s=arcselector9901; d=microsoft.com; cv=none;\r\n b={_b64(r, 256)}"))
        headers.append(("ARC-Message-Signature", f"i=1; a=rsa-sha256; c=relaxed/relaxed; d=microsoft.com;\r\n"
                        f" s=arcselector9901; h=From:Date:Subject:Message-ID:Content-Type:MIME-Version;\r\n bh={_b64(r, 32)}=;\r\n b={_b64(r, 256)}"))
    headers.append(("DKIM-Signature", (
        f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=selector1;\r\n\th=From:Date:Subject:Message-ID:"
        f"Content-Type:MIME-Version:X-MS-Exchange-SenderADCheck;\r\n\tbh={_b64(r, 32)};\r\n\t"
        f"b={_b64(r, 256)}")))
    from_value: str
    enc_name = _encoded(name, bool(b["name_latin1"]), r)
    if isinstance(enc_name, Header):
        from_value = formataddr((name, addr), charset=str(vars(enc_name)["_chunks"][0][1]))  # the charset Header chose
    else:
        from_value = formataddr((name, addr))
    headers.append(("From", from_value))
    headers.append(("To", formataddr(SUPPORT) if r.random() < 0.7 else SUPPORT[1]))
    if r.random() < 0.2:
        cb = _base(seed, (i * 7 + 3) % max(1, i + 1))
        headers.append(("CC", formataddr((str(cb["name"]), f"{str(cb['addr']).split('@')[0]}@{domain}"), charset="utf-8")))
    headers.append(("Subject", _encoded(subject, subj_latin1, r)))
    headers.append(("Date", format_datetime(local_date)))
    headers.append(("Message-ID", str(b["msgid"])))
    if chain:
        parent = _base(seed, chain[-1])
        headers.append(("In-Reply-To", str(parent["msgid"])))
        headers.append(("References", "\r\n ".join(str(_base(seed, j)["msgid"]) for j in chain)))
    if provider == "outlook":
        headers.append(("Thread-Topic", _encoded(subject.removeprefix("Re: "), subj_latin1, r)))
        headers.append(("Thread-Index", base64.b64encode(r.randbytes(22 + 5 * len(chain))).decode()))
        headers.append(("Accept-Language", "en-US"))
        headers.append(("Content-Language", "en-US"))
        headers.append(("X-MS-Has-Attach", "yes" if isinstance(msg, MIMEMultipart) and msg.get_content_subtype() == "mixed" else ""))
        headers.append(("X-MS-TNEF-Correlator", ""))
        headers.append(("X-MS-Exchange-Organization-SCL", str(r.randrange(-1, 2))))
        headers.append(("X-MS-Exchange-CrossTenant-OriginalArrivalTime", format_datetime(date)))
        headers.append(("X-MS-Exchange-CrossTenant-Id", hashlib.md5(domain.encode()).hexdigest()))
    mailer = r.choice([m for m in MAILERS if m[0] == provider] or [("", None)])[1]
    if mailer and provider in ("thunderbird", "apple"):
        headers.append(("User-Agent" if provider == "thunderbird" else "X-Mailer", mailer))
    elif mailer:
        headers.append(("X-Mailer", mailer))
    headers.append(("X-Originating-IP", f"[{ip}]"))
    headers.append(("X-Spam-Status", f"No, score={r.uniform(-3, 4):.1f} required=5.0 tests=BAYES_00,DKIM_SIGNED,"
                    "DKIM_VALID,HTML_MESSAGE,SPF_PASS autolearn=ham autolearn_force=no version=3.4.6"))
    headers.append(("X-Spam-Checker-Version", "SpamAssassin 3.4.6 (2021-04-09) on mx1.support.example"))
    if r.random() < 0.05:
        headers.append(("Importance", "high"))
        headers.append(("X-Priority", "1"))
    for sub in msg.walk():  # email.mime puts MIME-Version on every part; mailers do not
        if sub is not msg:
            del sub["MIME-Version"]
    # MIME headers made by email.mime go after the rest
    mime_headers = list(msg.items())
    for k in list(msg.keys()):
        del msg[k]
    # compat32 keeps a Header value as is and encodes it when writing; typeshed's MIMEBase takes only str
    with_headers = cast("Message[str, str | Header]", msg)
    for k, v in headers:
        with_headers[k] = v
    msg["MIME-Version"] = "1.0"
    for k, v in mime_headers:
        if k != "MIME-Version":
            msg[k] = v
    from email.policy import compat32

    return msg.as_bytes(policy=compat32.clone(linesep="\r\n"))


# -- the cache -----------------------------------------------------------------------


def cache_dir(seed: int = DEFAULT_SEED) -> Path:
    return CACHE_ROOT / f"v{VERSION}-seed{seed}"


def _write(args: tuple[int, int, str]) -> int:
    seed, i, folder = args
    path = Path(folder) / f"{i:06d}.eml"
    data = build(seed, i)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def ensure(n: int, seed: int = DEFAULT_SEED, workers: int | None = None) -> list[Path]:
    """Paths of the first ``n`` mails, generated (in parallel) where not cached yet."""
    folder = cache_dir(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:06d}.eml" for i in range(n)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        workers = workers or os.cpu_count() or 1
        print(f"corpus: generating {len(missing)} mails into {folder} ({workers} processes)...", flush=True)
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_write, [(seed, i, str(folder)) for i in missing], chunksize=50):
                pass
    return paths


def iter_batches(paths: list[Path], max_count: int = 200, max_bytes: int = 16 * 1024 * 1024) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    total = 0
    for p in paths:
        data = p.read_bytes()
        if batch and (len(batch) >= max_count or total + len(data) > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(data)
        total += len(data)
    if batch:
        yield batch


def mail_date(seed: int, i: int) -> datetime:
    """When mail i arrived (its INTERNALDATE): its Date plus a few seconds."""
    d = cast(datetime, _base(seed, i)["date"])
    return d + timedelta(seconds=random.Random(f"{seed}:{i}:arrive").randrange(2, 90))


if __name__ == "__main__":  # a quick look: python tests/bench/corpus.py [N]
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    ps = ensure(n)
    sizes = [p.stat().st_size for p in ps]
    print(f"{n} mails, {sum(sizes) / 1e6:.1f} MB, mean {sum(sizes) / n / 1024:.1f} KiB, "
          f"max {max(sizes) / 1024:.0f} KiB, in {cache_dir()}")

"""Chaos (issue 12): a stream of real requests mixed with hostile but valid mail, while
PostgreSQL restarts and the IMAP connection drops, through the running service.

Asserted at the end: every authenticated representative's request is exactly
one case, made at its cutoff; no cutoff is left due; nothing is lost and
nothing is sent twice; every hostile mail is quarantined, held, suppressed or
answered with a notice -- never a case -- and carries the reason.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from batching import AUTH, DIRECTORY, ny
from helpers import ImapAccount, make_mail, reap, run_cli, terminate, write_config
from servers.postgres import PrivateCluster
from servers.proxy import Proxy
from servers.smtp import SmtpSink
from test_daemon import _wait
from test_faults import private_pg  # noqa: F401  (the fixture)

from mailcase.domain.db import open_engine
from mailcase.domain.tables import BATCH, CASE, CASE_MESSAGE, MESSAGE, OUTBOX, QUARANTINE, VERDICT

REPS = ["alice@acme.example", "bob@globex.example", "monitor@acme.example"]


def _auth(domain: str, ok: bool = True) -> str:
    name, value = AUTH
    if ok:
        return f"{name}: {value.format(d=domain)}"
    return f"{name}: mx.support.example; spf=fail smtp.mailfrom={domain}; dkim=none; dmarc=fail header.from={domain}"


def _raw(lines: list[str], body: bytes) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def _hostile(at: datetime) -> list[tuple[str, bytes]]:
    """(what, raw) for every class of hostile-but-valid mail."""
    d = format_datetime(at)
    out: list[tuple[str, bytes]] = []

    def plain(n: int, from_value: str, subject: str, domain: str, extra: list[str] | None = None,
              body: bytes = b"Hello.\r\n", ok: bool = True) -> bytes:
        return _raw([f"From: {from_value}", "To: support@support.example", f"Subject: {subject}", f"Date: {d}",
                     f"Message-ID: <hostile{n}@{domain}>", _auth(domain, ok), "MIME-Version: 1.0",
                     "Content-Type: text/plain; charset=utf-8", *(extra or [])], body)

    # every address class that stopped the cutoffs
    for i, value in enumerate(['"john doe"@evil.example', '"a,b"@evil.example', '"x<y"@evil.example',
                               '"a(b"@evil.example', '"a:b"@evil.example', '"Doe, John" <"j d"@evil.example>']):
        out.append(("address", plain(i, value, f"Address class {i}", "evil.example")))
    out.append(("address", _raw([
        "From: =?utf-8?q?J=C3=B6hn?= <jöhn@xn--exmple-cua.example>", "To: support@support.example",
        "Subject: Internationalised", f"Date: {d}", "Message-ID: <hostile20@xn--exmple-cua.example>",
        _auth("xn--exmple-cua.example"), "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit"], "Grüße\r\n".encode())))
    # broken encodings
    out.append(("encoding", plain(30, "x1@broken.example", "=?x-no-such-charset?q?Hallo?=", "broken.example",
                                  ["Content-Transfer-Encoding: base64"], b"!!!not base64 at all!!!\r\n")))
    out.append(("encoding", _raw([
        "From: x2@broken.example", "To: support@support.example", "Subject: bad charset", f"Date: {d}",
        "Message-ID: <hostile31@broken.example>", _auth("broken.example"), "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="x-unknown-charset"', "Content-Transfer-Encoding: 8bit"],
        b"\xff\xfe\xfd bytes in no charset \xc3\x28\r\n")))
    # a huge part
    blob = base64.encodebytes(os.urandom(3 * 1024 * 1024)).replace(b"\n", b"\r\n")
    out.append(("huge", _raw([
        "From: big@bulk.example", "To: support@support.example", "Subject: A big file", f"Date: {d}",
        "Message-ID: <hostile40@bulk.example>", _auth("bulk.example"), "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="B"'],
        b"--B\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--B\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + blob + b"--B--\r\n")))
    # forged tokens: a stranger writing a case token; the requester's address forged on a survey token
    out.append(("token", plain(50, "mallory@evil.example", "Re: [Case #000001] I want in", "evil.example")))
    out.append(("token", plain(51, "Alice Admin <alice@acme.example>", "Re: [Survey #000001] How did we do?",
                               "acme.example", body=b"5\r\n", ok=False)))
    # a representative's address forged outright
    out.append(("forged", plain(52, "alice@acme.example", "Wire the refund today", "acme.example", ok=False)))
    # autoresponders that do not thread: a marked one from a representative, a bare one from a stranger
    out.append(("autoresponder", plain(60, "bob@globex.example", "Automatic reply: your mail", "globex.example",
                                       ["Auto-Submitted: auto-replied"], b"I am out of the office.\r\n")))
    for i in range(5):
        out.append(("autoresponder", plain(61 + i, "robot@helpdesk.example", "Thank you for contacting us",
                                           "helpdesk.example", body=f"Ticket {900 + i} was opened.\r\n".encode())))
    # a flood: twenty identical mails in one second
    for i in range(20):
        out.append(("flood", plain(70 + i, "spam@flood.example", "BUY NOW", "flood.example", body=b"Cheap!\r\n")))
    return out


def test_chaos(imap: ImapAccount, private_pg: PrivateCluster, tmp_path: Path) -> None:  # noqa: F811
    started = time.monotonic()
    proxy = Proxy(imap.server.port).start()
    sink = SmtpSink().start()
    csv = tmp_path / "accounts.csv"
    csv.write_text(DIRECTORY)
    cfg = write_config(
        tmp_path / "c.toml", private_pg.url, [imap.mailbox_config(start_at="all", port=proxy.port)],
        rules={"sender_authentication": "authserv-id", "authserv_id": "mx.support.example"},
        directory={"csv": str(csv), "effective": "2025-01-01T00:00:00+00:00"},
        daemon={"stage_seconds": 1.0, "batch_seconds": 1.0, "deliver_seconds": 1.0, "reconnect_max_seconds": 1.0,
                "idle_silence_seconds": 5.0},
        outgoing={"from_address": "support@support.example", "transport": "smtp", "smtp_host": "127.0.0.1",
                  "smtp_port": sink.port, "smtp_security": "plain"},
    )
    clock = tmp_path / "clock"
    clock.write_text(ny(2026, 11, 23, 8, 30).isoformat())
    env = {**os.environ, "MAILCASE_TEST_CLOCK": str(clock)}
    proc = subprocess.Popen([sys.executable, "-m", "mailcase", "--config", str(cfg), "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr
    assert stderr is not None
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(iter(stderr.readline, "")), daemon=True)
    reader.start()
    engine = open_engine(private_pg.url)
    requests: dict[str, datetime] = {}   # Message-ID -> the cutoff it must become a case at
    hostile: dict[str, str] = {}         # Message-ID -> what kind of hostile mail
    appended = 0

    def send_requests(first: int, at: datetime, cutoff: datetime, n: int = 12) -> None:
        nonlocal appended
        for i in range(first, first + n):
            sender = REPS[i % len(REPS)]
            mid = f"<request{i}@{sender.rpartition('@')[2]}>"
            imap.append(make_mail(i, sender=sender, subject=f"Chaos request {i}", date=at, msgid=mid,
                                  headers=dict([_auth(sender.rpartition("@")[2]).split(": ", 1)])), when=at)
            requests[mid] = cutoff
            appended += 1

    def send_hostile(at: datetime, tag: str, part: int) -> None:
        nonlocal appended
        every = _hostile(at)
        split = sum(1 for what, _ in every if what not in ("autoresponder", "flood"))
        for what, raw in (every[:split] if part == 0 else every[split:]):
            mid = raw.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
            raw = raw.replace(mid.encode(), mid.replace(">", f".{tag}>").encode())
            hostile[mid.replace(">", f".{tag}>")] = what
            imap.append(raw, when=at)
            appended += 1

    def stored() -> int:
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.count()).select_from(MESSAGE)).scalar_one())
        except Exception:
            return -1

    def restart_while(send: Any) -> None:
        """Restart PostgreSQL while ``send`` appends mail the service is busy storing."""
        restart = threading.Thread(target=private_pg.restart)
        restart.start()
        send()
        restart.join()

    try:
        _wait(lambda: "event=ready" in "".join(err_lines), 60, 0.1)
        # before the 09:30 cutoff, in slices the service works on while the faults hit:
        # requests and hostile mail, the IMAP link cut twice, PostgreSQL restarted mid-stream
        send_requests(0, ny(2026, 11, 23, 8, 0), ny(2026, 11, 23, 9, 30), n=6)
        send_hostile(ny(2026, 11, 23, 8, 5), "a", 0)
        proxy.cut_all()
        send_requests(6, ny(2026, 11, 23, 8, 10), ny(2026, 11, 23, 9, 30), n=6)
        restart_while(lambda: send_hostile(ny(2026, 11, 23, 8, 15), "a", 1))
        send_requests(12, ny(2026, 11, 23, 8, 20), ny(2026, 11, 23, 9, 30))
        proxy.cut_all()
        _wait(lambda: stored() == appended, 90, 0.5)
        clock.write_text(ny(2026, 11, 23, 9, 40).isoformat())

        def closed(cutoff: datetime) -> bool:
            try:
                with engine.connect() as conn:
                    return conn.execute(sa.select(BATCH.c.id).where(BATCH.c.cutoff_at == cutoff)).first() is not None
            except Exception:
                return False

        _wait(lambda: closed(ny(2026, 11, 23, 9, 30)), 60, 0.5)
        # before the 15:30 cutoff: more of both, PostgreSQL restarted again mid-stream
        clock.write_text(ny(2026, 11, 23, 11, 0).isoformat())
        restart_while(lambda: send_requests(24, ny(2026, 11, 23, 10, 30), ny(2026, 11, 23, 15, 30)))
        send_hostile(ny(2026, 11, 23, 10, 40), "b", 0)
        proxy.cut_all()
        send_hostile(ny(2026, 11, 23, 10, 45), "b", 1)
        _wait(lambda: stored() == appended, 90, 0.5)
        clock.write_text(ny(2026, 11, 23, 15, 40).isoformat())
        _wait(lambda: closed(ny(2026, 11, 23, 15, 30)), 60, 0.5)

        def settled() -> bool:
            try:
                with engine.connect() as conn:
                    unsent = conn.execute(sa.select(sa.func.count()).where(
                        OUTBOX.c.status.in_(["queued", "sending"]))).scalar_one()
                    open_mail = conn.execute(sa.select(sa.func.count()).where(MESSAGE.c.state.in_(
                        ["stored", "headers-read", "parsed", "pending"]))).scalar_one()
                return unsent == 0 and open_mail == 0
            except Exception:
                return False

        _wait(settled, 60, 0.5)
        status = run_cli("--config", str(cfg), "status", "--json", env={"MAILCASE_TEST_CLOCK": str(clock)})
        st = json.loads(status.stdout)
        assert st["due_cutoff"] is None and not st["cutoff_error"], st
        assert terminate(proc) == 0
    finally:
        reap(proc)
        reader.join(5)
        err = "".join(err_lines)
        proxy.stop()
        sink.stop()
        if sys.exc_info()[0] is not None:
            print("the service's log:\n" + err[-20000:])
    took = time.monotonic() - started
    print(f"\nchaos: {appended} mails, 2 PostgreSQL restarts, 3 IMAP cuts, {took:.0f} s")
    assert err.count("event=mailbox-state") >= 2  # the cuts were felt (down, connected again)
    assert took < 300

    with engine.connect() as conn:
        by_mid = {r.message_id: r for r in conn.execute(sa.select(MESSAGE.c.id, MESSAGE.c.message_id, MESSAGE.c.state))}
        links = conn.execute(sa.select(MESSAGE.c.message_id, CASE_MESSAGE.c.role, CASE.c.number, BATCH.c.cutoff_at)
                             .join(CASE_MESSAGE, CASE_MESSAGE.c.message_pk == MESSAGE.c.id)
                             .join(CASE, CASE.c.id == CASE_MESSAGE.c.case_id)
                             .outerjoin(BATCH, BATCH.c.id == CASE.c.batch_id)).all()
        reasons = {pk: n for pk, n in conn.execute(sa.select(VERDICT.c.message_pk, sa.func.count())
                                                   .where(VERDICT.c.reason != "").group_by(VERDICT.c.message_pk))}
        quarantined = {pk for (pk,) in conn.execute(sa.select(QUARANTINE.c.message_pk))}
        outbox = conn.execute(sa.select(OUTBOX.c.message_id, OUTBOX.c.kind, OUTBOX.c.case_id, OUTBOX.c.status)).all()
    # nothing lost
    assert len(by_mid) == appended, (len(by_mid), appended)
    # every authenticated representative's request: exactly one case, at its cutoff
    cases_of = Counter(mid for mid, role, _, _ in links if role == "request")
    for mid, cutoff in requests.items():
        assert cases_of[mid] == 1, mid
        [(_, _, _, at)] = [row for row in links if row[0] == mid]
        assert at == cutoff, (mid, at, cutoff)
    assert len({n for mid, _, n, _ in links if mid in requests}) == len(requests)
    # every hostile mail: no case, decided with a reason (verdicts) or quarantined with one
    linked = {mid for mid, *_ in links}
    for mid, what in hostile.items():
        row = by_mid[mid]
        assert mid not in linked, (what, mid)
        assert row.state in ("classified", "held", "batched", "quarantined"), (what, mid, row.state)
        assert reasons.get(row.id) or row.id in quarantined, (what, mid)
    assert sum(1 for m in hostile if by_mid[m].state == "held") >= 2 * 5  # the floods' excess
    # nothing sent twice, everything owed sent
    assert {s for _, _, _, s in outbox} <= {"sent", "capped", "suppressed"}
    received = Counter(str(r.message["Message-ID"]).strip() for r in sink.received)
    assert all(n == 1 for n in received.values()), received.most_common(3)
    acks = Counter(case_id for _, kind, case_id, _ in outbox if kind == "ack")
    assert all(n == 1 for n in acks.values())
    assert "Traceback" not in err, err[-4000:]

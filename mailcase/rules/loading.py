"""The rules' view of stored mail: a :class:`~mailcase.rules.base.Mail` built from the ledger.

The classify stage reads each mail whole and its header fields afresh; a
cutoff trusts the header fields stored at ingestion and reads only the head of
each mail (:func:`load_mails`).  The authentication result an earlier pass
computed is kept with the classification and reused when it was computed
under the same settings (:func:`auth_json`, :func:`auth_from_json`), and so
is what the content-only rules worked out when it was computed from the same
mail by the same code (content.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mailcase.domain.tables import BLOB, CLASSIFICATION, MESSAGE, PARSED_MAIL
from mailcase.mail.addresses import Address, AddressList
from mailcase.mail.header_info import HeaderInfo, read_headers
from mailcase.mail.headers import split_headers
from mailcase.rules.base import AuthResult, Mail, RuleSettings
from mailcase.rules.content import content_from_json


def _auth_key(settings: RuleSettings) -> list[Any]:
    return [settings.authserv_id, settings.rules.spam_header, list(settings.rules.spam_values)]


def auth_json(auth: AuthResult, settings: RuleSettings) -> dict[str, Any]:
    return {"key": _auth_key(settings), "checked": auth.checked, "found": auth.found, "dmarc": auth.dmarc_pass,
            "spf": auth.spf_aligned_pass, "dkim": auth.dkim_aligned_pass, "spam": auth.spam, "detail": auth.detail}


def auth_from_json(data: Any, settings: RuleSettings) -> AuthResult | None:
    """The stored result, if it was computed under the same settings."""
    if not isinstance(data, dict) or data.get("key") != _auth_key(settings):
        return None
    return AuthResult(bool(data["checked"]), bool(data["found"]), bool(data["dmarc"]), bool(data["spf"]),
                      bool(data["dkim"]), bool(data["spam"]), str(data["detail"]))


def _info_from_row(r: Any) -> HeaderInfo:
    """The header fields as ingestion stored them (no re-parse)."""
    if r.from_addr:
        addresses: tuple[Address, ...] = (Address(r.from_name or "", r.from_addr),)
        defects: tuple[str, ...] = () if r.from_strict else ("From was not exactly one well-formed mailbox",)
    else:
        addresses, defects = (), ("no From address",)
    return HeaderInfo(
        message_id=r.message_id, message_id_derived=bool(r.message_id_derived),
        from_list=AddressList(addresses, defects), subject=r.subject or "", date_at=r.date_at,
        in_reply_to=tuple((r.in_reply_to or "").split()), references=tuple((r.refs or "").split()),
        identity=r.identity,
    )


#: the bytes of a mail a cutoff reads first: enough for nearly every header block
HEAD_BYTES = 64 * 1024


def _whole_blob(conn: Connection, sha: str) -> Callable[[], bytes]:
    def load() -> bytes:
        data = conn.execute(sa.select(BLOB.c.data).where(BLOB.c.sha256 == sha)).scalar()
        return data or b""

    return load


def load_mails(
    conn: Connection, pks: Sequence[int], reread_headers: bool = True, settings: RuleSettings | None = None,
    head_only: bool | None = None,
) -> dict[int, Mail]:
    """The rules' view of stored mails; ``reread_headers=False`` trusts the stored
    header fields (a cutoff re-runs the chain on mail classified before) and
    reads only the head of each mail: its header block, and the rest only if
    a rule asks (:meth:`Mail.whole_raw`).  A cutoff of 10,000 mails with
    attachments would otherwise read and hold every attachment."""
    if not pks:
        return {}
    if head_only is None:
        head_only = not reread_headers
    data = sa.func.substr(BLOB.c.data, 1, HEAD_BYTES).label("data") if head_only else BLOB.c.data
    rows = conn.execute(
        sa.select(
            MESSAGE.c.id, MESSAGE.c.received_at, MESSAGE.c.stored_at, MESSAGE.c.historical,
            MESSAGE.c.message_id, MESSAGE.c.message_id_derived, MESSAGE.c.from_addr, MESSAGE.c.from_name,
            MESSAGE.c.from_strict, MESSAGE.c.subject, MESSAGE.c.date_at, MESSAGE.c.in_reply_to,
            MESSAGE.c.refs, MESSAGE.c.identity, MESSAGE.c.primary_sha256, BLOB.c.size,
            data, PARSED_MAIL.c.text_body, PARSED_MAIL.c.to_addrs, PARSED_MAIL.c.cc_addrs,
            PARSED_MAIL.c.pin_hmacs, PARSED_MAIL.c.reply_text, PARSED_MAIL.c.text_sha256, CLASSIFICATION.c.auth,
            PARSED_MAIL.c.loose_sha256, CLASSIFICATION.c.content,
        )
        .join(BLOB, BLOB.c.sha256 == MESSAGE.c.primary_sha256)
        .outerjoin(PARSED_MAIL, PARSED_MAIL.c.message_pk == MESSAGE.c.id)
        .outerjoin(CLASSIFICATION, CLASSIFICATION.c.message_pk == MESSAGE.c.id)
        .where(MESSAGE.c.id.in_(list(pks)))
    ).all()
    out: dict[int, Mail] = {}
    for r in rows:
        raw = bytes(r.data or b"")
        loader = None
        if len(raw) < (r.size or 0):  # the head only
            if b"\n\n" not in raw and b"\n\r\n" not in raw:  # a header block longer than the head
                raw = _whole_blob(conn, r.primary_sha256)()
            else:
                loader = _whole_blob(conn, r.primary_sha256)
        block = split_headers(raw)
        mail = out[r.id] = Mail(
            raw=raw, block=block, info=read_headers(raw, block) if reread_headers else _info_from_row(r),
            body=r.text_body or "", received_at=r.received_at or r.stored_at, to=tuple(r.to_addrs or ()),
            cc=tuple(r.cc_addrs or ()), pk=r.id, historical=bool(r.historical),
            pin_hmacs=tuple(r.pin_hmacs or ()), stored_reply=r.reply_text,
            auth_cache=auth_from_json(r.auth, settings) if settings is not None else None,
            load_raw=loader, stored_body_hash=r.text_sha256 or None, stored_loose_hash=r.loose_sha256 or None,
        )
        if r.content is not None:
            mail.facts.update(content_from_json(r.content, mail))
    return out


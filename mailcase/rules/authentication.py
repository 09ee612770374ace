"""Rule 6: sender authentication from our own server's Authentication-Results.

Only the topmost Authentication-Results header carrying our configured
authserv-id counts (RFC 8601 §5: our receiving server must strip forged
copies of its own header; any other header is the sender's to write).
Representative rights need a DMARC pass aligned with the From domain
(``dmarc=none`` is not a pass).  The operator chooses an authserv-id or the
explicit insecure-off mode.
"""

from __future__ import annotations

import re

import authres

from mailcase.mail.addresses import AddressError, ascii_domain, domain_of
from mailcase.rules.base import AuthResult, Context, Disposition, Mail, Notice, Outcome, Verdict

RULE = "sender-authentication"


def _aligned(domain: str | None, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489 §3.1): same organisational domain, approximated
    as equal or one a subdomain of the other."""
    if not domain:
        return False
    d = domain.strip().strip("@").lower().rstrip(".")
    if "@" in d:
        d = d.rpartition("@")[2]
    # an internationalised domain is compared in one form: A-labels (a server
    # writes xn--... in its header where the From field holds UTF-8)
    d, from_domain = _a_labels(d), _a_labels(from_domain)
    return d == from_domain or d.endswith("." + from_domain) or from_domain.endswith("." + d)


def _a_labels(domain: str) -> str:
    if domain.isascii():
        return domain
    try:
        return ascii_domain(domain)
    except AddressError:
        return domain


_COMMENT = re.compile(r"\([^()]*\)")


def authserv_id(value: str) -> str:
    """The authserv-id of an Authentication-Results value, read without the
    full parser, so that a header the parser rejects is still recognised as
    ours (RFC 8601 §2.2: ``authserv-id [ CFWS authres-version ] ; ...``)."""
    head = value.split(";", 1)[0]
    for _ in range(3):  # comments nest rarely, and never deeply in practice
        head = _COMMENT.sub(" ", head)
    words = head.split()
    return words[0].lower().rstrip(".") if words else ""


def evaluate(mail: Mail, ctx: Context) -> AuthResult:
    if mail.auth_cache is not None:
        return mail.auth_cache
    settings = ctx.settings
    spam = False
    if settings.rules.spam_header:
        value = (mail.header(settings.rules.spam_header) or "").strip().lower()
        spam = any(value.startswith(v.lower()) for v in settings.rules.spam_values) if value else False
    if settings.authserv_id is None:
        return AuthResult(False, False, False, False, False, spam, "sender authentication is off (insecure-off)")
    from_domain = domain_of(mail.sender or "")
    ours = settings.authserv_id.lower()
    for value in mail.headers("authentication-results"):
        if authserv_id(value) != ours.rstrip("."):
            continue
        # the topmost of ours is the one our server wrote: a lower copy is the
        # sender's, whether or not ours can be read (RFC 8601 §5)
        try:
            parsed = authres.AuthenticationResultsHeader.parse("Authentication-Results: " + value)
        except Exception as exc:
            return AuthResult(True, True, False, False, False, spam,
                              f"our server's Authentication-Results ({settings.authserv_id}) "
                              f"cannot be read ({type(exc).__name__}): not authenticated")
        dmarc = spf = dkim = False
        seen: list[str] = []
        for r in parsed.results:
            method, result = (r.method or "").lower(), (r.result or "").lower()
            props = {f"{p.type}.{p.name}".lower(): (p.value or "") for p in r.properties}
            seen.append(f"{method}={result}")
            if method == "dmarc" and result == "pass":
                dmarc = dmarc or _aligned(props.get("header.from") or from_domain, from_domain)
            elif method == "spf" and result == "pass":
                # a null reverse path (a bounce) is checked by its HELO name (RFC 7208 §2.3)
                spf = spf or _aligned(props.get("smtp.mailfrom") or props.get("smtp.helo"), from_domain)
            elif method == "dkim" and result == "pass":
                dkim = dkim or _aligned(props.get("header.d") or props.get("header.i"), from_domain)
        detail = f"our server ({settings.authserv_id}) says " + (", ".join(seen) or "nothing")
        return AuthResult(True, True, dmarc, spf, dkim, spam, detail)
    return AuthResult(True, False, False, False, False, spam,
                      f"no Authentication-Results from our server ({settings.authserv_id})")


def sender_authentication(mail: Mail, ctx: Context, so_far: Outcome) -> Verdict | None:
    auth = evaluate(mail, ctx)
    sender = so_far.sender
    if not auth.checked:
        return Verdict(RULE, "authentication-off", auth.detail, auth=auth)
    if sender is not None and sender.eligible and not auth.dmarc_pass:
        return Verdict(
            RULE, "sender-unverified",
            f"{sender.address} is a representative, but the mail is not authenticated: "
            f"{auth.detail} (needs dmarc=pass aligned with the From domain)",
            Disposition.NOTICE_ONLY, auth=auth, notice=Notice.UNVERIFIED,
        )
    name = "authenticated" if auth.dmarc_pass else "not-authenticated"
    return Verdict(RULE, name, auth.detail, auth=auth)

"""The rules corpus: .eml files with expected disposition, rule hits and requester.

Each ``tests/rules_corpus/NNN-name.eml`` has a sidecar ``NNN-name.toml``::

    disposition = "pending"            # required
    requester = "alice.admin@acme.example"   # the address the identity rule matched;
                                       # "" when it did not run (follow-ups, suppressed
                                       # mail) or matched no single mailbox
    hits = ["representative"]          # verdict names that must appear
    not_hits = []                      # verdict names that must not appear
    near_miss = ["scope"]              # rules that must NOT hit (the mail is built to tempt them)
    notice = "unknown-sender"          # expected notice kind ("" = none); optional
    notice_allowed = true              # optional
    severity = 2                       # optional
    flags = ["volume"]                 # optional; must all be present
    not_flags = ["volume"]             # optional; must all be absent
    marks = ["no-auto-reply"]          # optional; must all be present
    not_marks = ["automatic"]          # optional; must all be absent
    effects = ["lock-pin"]             # optional; effect kinds that must be present
    not_effects = ["lock-pin"]         # optional; effect kinds that must be absent
    case = 123                         # optional; number of the case the mail attaches to
    hold = true / out_of_scope = true  # optional
    reasons = ["not authenticated"]    # optional; each must appear in some verdict's reason
    [context]                          # optional counters and settings for this mail
    similar_before = 0 / sender_before = 0 / pin_failures_before = 0 / repeated_before = 0
    account_requests_before = 0 / notices = [["addr", "kind", 1]]
    received_at = 2026-11-23T13:00:00Z / insecure = false
    spam_header = "X-Spam-Flag"        # the spam filter's header (values: "yes")

Every rule of the chain needs at least 3 hits and 2 near-misses here, and
disabling any rule makes some corpus case fail (the mutation test).  Every
expectation is what the agreement and the RFCs ask for, not what the code
happened to do: when they disagreed, the rule was fixed.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from rules_fake import FakeContext, load_directory, mail_from_bytes, settings

from mailcase.rules.base import Mail, Outcome
from mailcase.rules.chain import CHAIN, run_chain

CORPUS = Path(__file__).parent / "rules_corpus"
DIRECTORY, CASES, MSGIDS, RESOLVED = load_directory(CORPUS / "directory.toml")
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
RULES = ("automatic-mail", "bounce", "survey", "threading", "staff", "sender-identity", "sender-authentication",
         "no-backscatter", "pin", "standing", "scope", "severity", "floods", "abuse-flags")


KEYS = {"disposition", "requester", "hits", "not_hits", "near_miss", "notice", "notice_allowed", "severity",
        "flags", "not_flags", "marks", "not_marks", "effects", "not_effects", "case", "hold", "out_of_scope",
        "reasons", "context"}
CONTEXT_KEYS = {"similar_before", "sender_before", "repeated_before", "pin_failures_before", "account_requests_before",
                "notices", "received_at", "insecure", "spam_header"}


def cases() -> list[Path]:
    return sorted(CORPUS.glob("*.eml"))


@lru_cache(maxsize=None)
def expectation(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.with_suffix(".toml").read_text())


@lru_cache(maxsize=None)
def corpus_mail(path: Path) -> Mail:
    # parsing is the slow part; the mutation test classifies each mail many times
    c = expectation(path).get("context", {})
    received = c.get("received_at")
    at = received.astimezone(UTC) if isinstance(received, datetime) else None
    return mail_from_bytes(path.read_bytes(), at)


def classify(path: Path, disabled: frozenset[str] = frozenset()) -> Outcome:
    c = expectation(path).get("context", {})
    authserv = None if c.get("insecure") else "mx.support.example"
    spam = {"spam_header": c["spam_header"]} if c.get("spam_header") else {}
    ctx = FakeContext(
        now=NOW,
        settings=settings(authserv, **spam),
        directory=DIRECTORY, cases=CASES, case_message_ids=MSGIDS, resolved=RESOLVED,
        similar_before=c.get("similar_before", 0), sender_before=c.get("sender_before", 0),
        repeated_before=c.get("repeated_before", 0),
        pin_failures_before=c.get("pin_failures_before", 0),
        account_requests_before=c.get("account_requests_before", 0),
        notices={(a, k): n for a, k, n in c.get("notices", [])},
    )
    return run_chain(corpus_mail(path), ctx, disabled=disabled)


def problems(path: Path, outcome: Outcome) -> list[str]:
    exp = expectation(path)
    out = []
    names = {v.name for v in outcome.verdicts}
    rules = {v.rule for v in outcome.verdicts}
    if outcome.final.value != exp["disposition"]:
        out.append(f"disposition {outcome.final.value}, expected {exp['disposition']}")
    if "requester" not in exp:
        out.append("no requester expectation")
    requester = outcome.sender.address if outcome.sender and outcome.sender.address else ""
    if requester != exp.get("requester"):
        out.append(f"requester {requester!r}, expected {exp.get('requester')!r}")
    for name in exp.get("hits", []):
        if name not in names:
            out.append(f"verdict {name} missing")
    for name in exp.get("not_hits", []):
        if name in names:
            out.append(f"verdict {name} present")
    for rule in exp.get("near_miss", []):
        if rule in rules:
            out.append(f"near-miss rule {rule} hit")
    if "notice" in exp and (outcome.notice.value if outcome.notice else "") != exp["notice"]:
        out.append(f"notice {outcome.notice}, expected {exp['notice']!r}")
    if "notice_allowed" in exp and outcome.notice_allowed != exp["notice_allowed"]:
        out.append(f"notice_allowed {outcome.notice_allowed}")
    if "severity" in exp and outcome.severity != exp["severity"]:
        out.append(f"severity {outcome.severity}, expected {exp['severity']}")
    for flag in exp.get("flags", []):
        if flag not in outcome.flags:
            out.append(f"flag {flag} missing")
    for flag in exp.get("not_flags", []):
        if flag in outcome.flags:
            out.append(f"flag {flag} present")
    marks = {m.value for m in outcome.marks}
    for mark in exp.get("marks", []):
        if mark not in marks:
            out.append(f"mark {mark} missing")
    for mark in exp.get("not_marks", []):
        if mark in marks:
            out.append(f"mark {mark} present")
    effects = {e.kind for e in outcome.effects}
    for kind in exp.get("effects", []):
        if kind not in effects:
            out.append(f"effect {kind} missing")
    for kind in exp.get("not_effects", []):
        if kind in effects:
            out.append(f"effect {kind} present")
    if "case" in exp and (outcome.case.number if outcome.case else None) != exp["case"]:
        out.append(f"case {outcome.case.number if outcome.case else None}, expected {exp['case']}")
    for key in ("hold", "out_of_scope"):
        if key in exp and getattr(outcome, key) != exp[key]:
            out.append(f"{key} {getattr(outcome, key)}, expected {exp[key]}")
    for text in exp.get("reasons", []):
        if not any(text in v.reason for v in outcome.verdicts):
            out.append(f"no verdict reason mentions {text!r}")
    return out


@pytest.mark.parametrize("path", cases(), ids=lambda p: p.stem)
def test_corpus_mail(path: Path) -> None:
    outcome = classify(path)
    trail = "\n".join(f"  {v.rule}: {v.name}: {v.reason}" for v in outcome.verdicts)
    assert not problems(path, outcome), f"{problems(path, outcome)}\nverdicts:\n{trail}"


def test_corpus_size_and_coverage() -> None:
    paths = cases()
    assert len(paths) >= 80, f"only {len(paths)} corpus mails"
    hits: Counter[str] = Counter()
    near: Counter[str] = Counter()
    for path in paths:
        outcome = classify(path)
        for rule in {v.rule for v in outcome.verdicts}:
            hits[rule] += 1
        for rule in expectation(path).get("near_miss", []):
            near[rule] += 1
    thin = {r: (hits[r], near[r]) for r in RULES if hits[r] < 3 or near[r] < 2}
    assert not thin, f"rules with fewer than 3 hits or 2 near-misses: {thin}"


def test_sidecars_are_well_formed() -> None:
    # a misspelt key or rule name would silently check nothing
    emls = {p.stem for p in CORPUS.glob("*.eml")}
    tomls = {p.stem for p in CORPUS.glob("*.toml")} - {"directory"}
    assert emls == tomls, f"without sidecar: {sorted(emls - tomls)}; without mail: {sorted(tomls - emls)}"
    for path in cases():
        exp = expectation(path)
        assert not set(exp) - KEYS, f"{path.name}: unknown keys {sorted(set(exp) - KEYS)}"
        assert not set(exp.get("context", {})) - CONTEXT_KEYS, f"{path.name}: unknown context keys"
        assert not set(exp.get("near_miss", [])) - set(RULES), f"{path.name}: unknown rule in near_miss"


@pytest.mark.parametrize("spec", CHAIN, ids=lambda s: s.name)
def test_disabling_a_rule_fails_some_case(spec: Any) -> None:
    for path in cases():
        if problems(path, classify(path, disabled=frozenset({spec.name}))):
            return
    pytest.fail(f"disabling {spec.name} changes no corpus outcome: the corpus does not test it")

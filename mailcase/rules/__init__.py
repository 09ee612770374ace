"""The rules chain: small pure rules, their order one table (chain.py)."""

from mailcase.rules.base import Disposition, Mail, Mark, Notice, Outcome, Verdict
from mailcase.rules.chain import CHAIN, RULE_NAMES, run_chain

__all__ = ["CHAIN", "RULE_NAMES", "Disposition", "Mail", "Mark", "Notice", "Outcome", "Verdict", "run_chain"]

"""How long to wait before retry number n: exponential, capped, with jitter.

Shared by every retry loop (IMAP reconnects, SMTP deferrals) so that many
failures do not all retry in the same second.
"""

from __future__ import annotations

import random


def delay(attempt: int, base: float, maximum: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after ``attempt`` failures (1, 2, ...): base * 2^(n-1), capped, times 0.5-1.5."""
    raw = min(base * (2 ** min(max(attempt - 1, 0), 30)), maximum)
    factor = rng.uniform(0.5, 1.5) if rng else random.uniform(0.5, 1.5)
    return float(raw * factor)

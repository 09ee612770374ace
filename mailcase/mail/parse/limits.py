"""How much of a mail the parse reads: every bound in one place.

The other modules read these as ``limits.NAME`` when they run, not at
import, so a test can lower one (the thinning is fuzzed with tiny budgets).
"""

from __future__ import annotations

#: characters of body text kept
MAX_BODY_CHARS = 1_000_000
#: attachments listed (the rest is one "(more not listed)" entry)
MAX_ATTACHMENTS = 1000
#: MIME nesting read (the parser's own recursion ends near 900 levels)
MAX_DEPTH = 50
#: names listed inside one container (an attached mail, winmail.dat)
MAX_CONTENTS = 200
#: defects listed (they are for display)
MAX_DEFECTS = 100
#: bytes of one text part decoded: a character takes four at most
MAX_TEXT_PART_BYTES = 4 * MAX_BODY_CHARS
#: a body larger than this, or of more lines, is thinned before the tree is built
THIN_ABOVE_BYTES = 8 * 1024 * 1024
THIN_ABOVE_LINES = 150_000
#: MIME parts read; the rest of the mail is not (a part costs the parser a kilobyte)
MAX_MIME_PARTS = 20_000
#: part bodies kept in the tree of a thinned mail, in all
KEEP_BYTES = 8 * 1024 * 1024
KEEP_LINES = 150_000
#: a part body that is not text is kept whole up to this (budget permitting)
SMALL_PART_BYTES = 64 * 1024
SMALL_PART_LINES = 2_000
#: header lines kept of one part of a thinned mail (at least the minimum, more
#: while the budget lasts)
MAX_PART_HEADER_LINES = 50
MAX_PART_HEADER_BYTES = 16 * 1024
MIN_PART_HEADER_LINES = 8
#: mail-parser parses every header field (and every Received in depth): not
#: run on a flood of them, where it would take seconds
MAILPARSER_MAX_FIELDS = 1000
MAILPARSER_MAX_HEADER_BYTES = 256 * 1024

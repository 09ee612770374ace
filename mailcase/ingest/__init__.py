"""1. Mail comes in: IMAP and local sources, fetch, the ledger of raw mail, parsing, quarantine."""

"""Throwaway servers for the tests: Dovecot (IMAP), PostgreSQL databases, an SMTP sink."""

"""The full parse of a mail: raw bytes to a ParsedEmail (entry point: message.parse_email)."""

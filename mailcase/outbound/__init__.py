"""4. Mail goes out: templates, the outbox, SMTP, bounces, surveys, staff mail, suggestions."""

"""Running the desk: the daemon, status, metrics, checks, retention, reports."""

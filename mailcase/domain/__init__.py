"""The stored world: tables, the database, the directory, cases, leases, the calendar."""

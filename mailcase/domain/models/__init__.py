"""The tables (SQLModel), one module per stage; :mod:`mailcase.domain.tables` holds a handle to each."""

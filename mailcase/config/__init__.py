"""Configuration: one TOML file -> typed, frozen values."""

"""3. At each cutoff, pending mail becomes cases."""

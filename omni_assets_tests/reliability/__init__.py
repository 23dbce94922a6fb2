"""The reliability suite: crashes, faults, bad input and secrets (docs/reliability.md)."""

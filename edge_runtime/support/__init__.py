"""Small helpers shared by building blocks (files, clocks, backoff)."""

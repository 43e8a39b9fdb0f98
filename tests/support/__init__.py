"""Helpers shared by test packages (plain code, not fixtures)."""

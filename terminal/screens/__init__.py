"""Screens of the terminal: one per state of a transaction."""

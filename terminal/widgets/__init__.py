"""Widgets of the PIN pad."""

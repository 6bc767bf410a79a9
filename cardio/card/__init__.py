"""The emulated social security card (docs/card.md)."""

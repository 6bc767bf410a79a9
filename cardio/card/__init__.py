"""The emulated social security card (card-apdu.md)."""

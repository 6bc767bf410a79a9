"""cardio: the card layer of shebao-pos: APDUs, the emulated card, readers.

Never imports textual: the card layer knows no screen.
"""

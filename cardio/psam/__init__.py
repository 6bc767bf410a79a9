"""The virtual PSAM: the terminal's security module of part 9 of the standard (docs/psam.md).

`state` is its file (terminal number, serial, the issuer's master keys), `store` reads,
recognises (`is_psam_file`), writes and locks that file, `card` is the PSAM itself
(`VirtualPsam`), and `chip` names the surface it shares with the user card's
`VirtualCard`, which the vpcd bridge and the in-process reader serve.
"""

"""Where a terminal's or an outlet's PSAM is: a PSAM file (a virtual PSAM in its own
virtual reader) or a PC/SC reader holding a real one, and the default virtual PSAM
beside the default card (`pos-terminal`, `cardio outlet`, `cardio read-bas --psam`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cardio.errors import UsageError
from cardio.keysource import PsamKeySource
from cardio.readers.base import Reader
from cardio.resources import private_folders, user_dir

DEFAULT_PSAM = "psam.json"


def default_psam() -> Path:
    """The embedded default: a virtual PSAM holding the test issuer's masters, in the
    user data folder beside the default card (made on first use)."""
    folder = user_dir() / "cards"
    private_folders(folder)
    path = folder / DEFAULT_PSAM
    if not path.exists():
        from cardio.issuer import fixture_issuer
        from cardio.psam import state, store

        store.create(path, state.make(fixture_issuer()))
    return path


def _names_a_file(spec: str) -> bool:
    """A path, not a reader's name: it exists, or it looks like one (a folder in it, or
    a .json name). Reader names are short words ("Virtual PCD 00 01") or indexes."""
    return Path(spec).exists() or os.sep in spec or spec.endswith(".json")


def psam_reader(spec: str | None) -> Reader:
    """A PSAM file's virtual reader, or the PC/SC reader `spec` names (a name or an
    index, as --reader); None: the default virtual PSAM."""
    if spec == "":
        raise UsageError("the --psam path is empty; give a PSAM file or a PSAM's reader")
    if spec is None or _names_a_file(spec):
        from cardio.psam import store as psam_store
        from cardio.readers.virtual import VirtualReader

        path = default_psam() if spec is None else Path(spec)
        make = f"make one with 'cardio card new --profile psam {path}'"
        if path.is_dir():
            raise UsageError(f"{path} is a folder; give a PSAM file, or {make}")
        if not path.exists():
            raise UsageError(f"{path}: no such PSAM file; {make}, or give a PSAM's reader")
        if not psam_store.is_psam_file(path):
            raise UsageError(f"{path} is not a PSAM file; {make} or give a PSAM's reader")
        return VirtualReader(path, shared_psam=True)
    from cardio.readers import pcsc

    return pcsc.PcscReader(pcsc.resolve(spec))


def open_psam(spec: str | None) -> PsamKeySource:
    """A connected PSAM key source, its terminal number read (a PSAM that does not answer
    is found now, before the first card)."""
    reader = psam_reader(spec)
    reader.connect()
    keys = PsamKeySource(reader)
    keys.start()
    return keys

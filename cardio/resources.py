"""Where the shipped test data lives: inside the wheel, or fixtures/ in a source checkout."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

HOME_VARIABLE = "SHEBAO_POS_HOME"

_SOURCE_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def data_dir(kind: str) -> Path:
    """`kind` is 'cards', 'keys' or 'holders'."""
    packaged = Path(str(resources.files("cardio"))) / f"_{kind}"
    return packaged if packaged.is_dir() else _SOURCE_FIXTURES / kind


def read_key(path: Path) -> bytes:
    """A 16-byte SM4 key written as hex; '#' starts a comment."""
    lines = [line.split("#", 1)[0].strip() for line in path.read_text("ascii").splitlines()]
    text = "".join(lines).replace(" ", "")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: the key must be written in hex digits") from None
    if len(key) != 16:
        raise ValueError(f"{path}: an SM4 key is 16 bytes (32 hex digits), found {len(key)}")
    return key


TEST_MASTER_KEY_FILE = "TEST-ONLY-master-key.hex"


def fixture_master_key() -> bytes:
    return read_key(data_dir("keys") / TEST_MASTER_KEY_FILE)


def user_dir() -> Path:
    """Where the user's own files go (default card, host database, outlet log).

    $SHEBAO_POS_HOME when set (tests set it, so they never touch a person's files),
    else the platform's user data folder.
    """
    override = os.environ.get(HOME_VARIABLE)
    if override:
        return Path(override)
    from platformdirs import user_data_path

    return user_data_path("shebao-pos")

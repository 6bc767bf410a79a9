"""Entry point of `pos-terminal` (the PIN pad itself is built in a later issue)."""

from __future__ import annotations

import sys


def main() -> int:
    print("pos-terminal: the PIN pad is not built yet.\n"
          "Meanwhile the emulated card works: try '.venv/bin/cardio card list-profiles'.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

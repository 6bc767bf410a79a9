"""How fast is a durable VERIFY? In-process VERIFY/s on a real card file, beside its floor.

A VERIFY with the right PIN writes the card file twice (the decremented try counter
before comparing, the restored one after: spec §4 anti-tearing); a wrong PIN writes it
once. Each write is `cardio.card.store.atomic_write` (temp file, fsync, rename, fsync of
the folder), so the floor is a bare loop of that same atomic write, of the same number
of bytes, into the same folder, in the same run.

Target: a VERIFY costs at most 1.5 x its atomic writes (right PIN: 2 writes, wrong: 1).

The three measurements are interleaved (rounds of floor / right / wrong, the order
rotating each round) so that machine noise hits all alike. fsyncs are counted by
wrapping os.fsync, files and directories apart.

    .venv/bin/python bench/bench_verify.py [--dir DIR] [--n N] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cardio.card import profiles, store
from cardio.card.card import VirtualCard

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.5
PROFILE = "employee-new"  # initial PIN 123456
RIGHT = bytes.fromhex("0020000003123456")
WRONG = bytes.fromhex("0020000003123457")
TRY_LIMIT = 15  # the most 63Cx can say: room for wrong PINs between right ones
WARMUP = 10


# --- fsync accounting -----------------------------------------------------------------


class FsyncCounter:
    """Wraps os.fsync; counts calls on directories and on everything else (files)."""

    def __init__(self) -> None:
        self.files = 0
        self.dirs = 0
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            self.dirs += 1
        else:
            self.files += 1
        self._real(fd)

    @contextlib.contextmanager
    def installed(self) -> Iterator[FsyncCounter]:
        os.fsync = self  # store.py looks up os.fsync at call time
        try:
            yield self
        finally:
            os.fsync = self._real


# --- measurement ----------------------------------------------------------------------


@dataclass
class Series:
    name: str
    writes: int  # atomic writes this operation is compared with
    times_ns: list[int] = field(default_factory=list)
    file_fsyncs: int = 0
    dir_fsyncs: int = 0

    def summary(self) -> dict[str, float | int | str]:
        us = [t / 1000 for t in self.times_ns]
        n = len(us)
        mean = statistics.fmean(us)
        return {
            "name": self.name,
            "n": n,
            "mean_us": mean,
            "median_us": statistics.median(us),
            "p90_us": statistics.quantiles(us, n=10)[-1] if n >= 2 else us[0],
            "min_us": min(us),
            "ops_per_s": 1e6 / mean,
            "file_fsyncs_per_op": self.file_fsyncs / n,
            "dir_fsyncs_per_op": self.dir_fsyncs / n,
        }


def filesystem_type(directory: Path) -> str:
    """What `stat -f -c %T` says (tmpfs, ext2/ext3, xfs, ...), else the mount table's type."""
    try:
        result = subprocess.run(
            ["stat", "-f", "-c", "%T", str(directory)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return result.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    best, kind = "", "unknown"
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as mounts:
        resolved = str(directory.resolve())
        for line in mounts:
            parts = line.split()
            if len(parts) >= 3 and resolved.startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def fresh_card(path: Path) -> None:
    """A card file at full tries, with the try limit raised to 15."""
    profiles.new_card(PROFILE, path, force=True)
    state = store.read(path).with_(try_limit=TRY_LIMIT, tries_left=TRY_LIMIT)
    store.atomic_write(path, store.encode(state))


def measure(directory: Path, rounds: int) -> dict[str, object]:
    directory.mkdir(parents=True, exist_ok=True)
    card_path = directory / "bench-card.json"
    floor_path = directory / "bench-floor.json"
    fresh_card(card_path)
    payload = store.encode(store.read(card_path))  # the same bytes a VERIFY writes

    floor = Series("atomic write (floor)", writes=1)
    right = Series("VERIFY right PIN", writes=2)
    wrong = Series("VERIFY wrong PIN", writes=1)
    counter = FsyncCounter()

    with store.FileStore(card_path) as file_store:
        card = VirtualCard(file_store.open(), file_store)
        card.power_on()

        def do_floor() -> None:
            store.atomic_write(floor_path, payload)

        def do_right() -> None:
            response = card.execute(RIGHT)
            if response != b"\x90\x00":
                raise SystemExit(f"right PIN answered {response.hex().upper()}, not 9000")

        def do_wrong() -> None:
            response = card.execute(WRONG)
            if response[0] != 0x63 or response[1] & 0xF0 != 0xC0:
                raise SystemExit(f"wrong PIN answered {response.hex().upper()}, not 63Cx")

        ops: list[tuple[Series, Callable[[], None]]] = [
            (floor, do_floor),
            (right, do_right),
            (wrong, do_wrong),
        ]
        # every rotation has at most one wrong PIN between two right ones: tries stay >= 13
        orders = [ops[i:] + ops[:i] for i in range(len(ops))]

        def one_round(index: int, record: bool) -> None:
            for series, op in orders[index % len(orders)]:
                if card.state.tries_left < 2:  # never expected; repaired outside the timing
                    card._save(card.state.with_(tries_left=TRY_LIMIT))
                files, dirs = counter.files, counter.dirs
                start = time.perf_counter_ns()
                op()
                elapsed = time.perf_counter_ns() - start
                if record:
                    series.times_ns.append(elapsed)
                    series.file_fsyncs += counter.files - files
                    series.dir_fsyncs += counter.dirs - dirs

        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with counter.installed():
                for i in range(WARMUP):
                    one_round(i, record=False)
                for i in range(rounds):
                    one_round(i, record=True)
        finally:
            if gc_was_enabled:
                gc.enable()
        card.power_off()

    for leftover in (card_path, floor_path, card_path.with_name(f".{card_path.name}.lock")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()

    results = {s.name: s.summary() for s in (floor, right, wrong)}
    f, r, w = (results[s.name] for s in (floor, right, wrong))
    ratios = {
        "right_vs_2_writes_median": float(r["median_us"]) / (2 * float(f["median_us"])),
        "right_vs_2_writes_mean": float(r["mean_us"]) / (2 * float(f["mean_us"])),
        "wrong_vs_1_write_median": float(w["median_us"]) / float(f["median_us"]),
        "wrong_vs_1_write_mean": float(w["mean_us"]) / float(f["mean_us"]),
    }
    return {
        "dir": str(directory),
        "filesystem": filesystem_type(directory),
        "rounds": rounds,
        "warmup_rounds": WARMUP,
        "card_file_bytes": len(payload),
        "python": platform.python_version(),
        "target_ratio": TARGET,
        "series": [f, r, w],
        "ratios": ratios,
        "target_met": {
            "right": ratios["right_vs_2_writes_median"] <= TARGET,
            "wrong": ratios["wrong_vs_1_write_median"] <= TARGET,
        },
    }


# --- output ---------------------------------------------------------------------------


def print_table(res: dict[str, object]) -> None:
    print(
        f"cardio VERIFY benchmark: {res['rounds']} interleaved rounds "
        f"(+{res['warmup_rounds']} warm-up), card file {res['card_file_bytes']} bytes"
    )
    print(f"dir {res['dir']} on filesystem {res['filesystem']}, Python {res['python']}")
    print()
    header = (
        f"{'operation':<22} {'mean µs':>9} {'median µs':>10} {'p90 µs':>9} "
        f"{'ops/s':>8}  {'fsyncs/op file, dir':>19}"
    )
    print(header)
    print("-" * len(header))
    series = res["series"]
    assert isinstance(series, list)
    for s in series:
        print(
            f"{s['name']:<22} {s['mean_us']:>9.1f} {s['median_us']:>10.1f} "
            f"{s['p90_us']:>9.1f} {s['ops_per_s']:>8.1f}  "
            f"{s['file_fsyncs_per_op']:>12.2f}, {s['dir_fsyncs_per_op']:.2f}"
        )
    ratios, met = res["ratios"], res["target_met"]
    assert isinstance(ratios, dict) and isinstance(met, dict)
    print()
    target = res["target_ratio"]
    print(
        f"right VERIFY / (2 x atomic write): {ratios['right_vs_2_writes_median']:.3f} median, "
        f"{ratios['right_vs_2_writes_mean']:.3f} mean   target <= {target}: "
        f"{'met' if met['right'] else 'NOT met'}"
    )
    print(
        f"wrong VERIFY / (1 x atomic write): {ratios['wrong_vs_1_write_median']:.3f} median, "
        f"{ratios['wrong_vs_1_write_mean']:.3f} mean   target <= {target}: "
        f"{'met' if met['wrong'] else 'NOT met'}"
    )
    if res["filesystem"] in ("tmpfs", "ramfs"):
        print(
            "note: this folder is in memory; fsync costs nothing here, so the numbers "
            "say little about a disk"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=REPO / ".bench",
        help="folder for the card file and the floor file (default: .bench/)",
    )
    parser.add_argument("--n", type=int, default=300, help="measured rounds (default 300)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("--n must be at least 2")
    results = measure(args.dir, args.n)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

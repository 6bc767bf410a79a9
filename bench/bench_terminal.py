"""How fast is the terminal to start and to answer a key? pos-terminal beside Textual's calculator.

Two measurements, each for our `pos-terminal` and for Textual's own calculator example
(`textual-calculator` on PyPI, by Will McGugan) in the same run, headless at 80x24:

- start-up: a fresh process per sample, from just before the process is spawned to the
  last frame of the first usable screen (ours: the main menu; the calculator: its pad),
  i.e. Python start-up, imports, building the app, composing, mounting, layout and the
  compositor's render, until the app goes idle. Ours runs as `pos-terminal --card PATH`
  does (`build(parse_args([...]))`, then `app.run()`), on a card file made once per run
  in a temp folder. Each sample also says where its time went: Python start-up,
  `import textual.app`, the rest of the app module's imports (the import-only time of
  each app module, measured in the same fresh process), building the app object
  (ours: reading the card file, opening the settlement host), running it to its first
  frame, and from there to the last frame of the usable screen.
- key press to redraw: in one process per app, after start-up (ours: `1` for payment,
  which asks for the amount), a digit at a time, from `pilot.press(digit)` to the first
  compositor frame that shows the new value (the frame in which the amount entry, or
  the calculator's display, was rendered with it). Also reported: the Pilot round trip
  `press` + `wait_for_scheduled_animations` + `pause`, which includes Pilot's own 20 ms
  idle polls. Between keys both apps are let settle (the pressed key's 0.2 s highlight
  goes off); after 7 digits the entry is cleared (ours: Delete, calculator: c),
  untimed, so both displays stay the same width.

Frames are timed by wrapping `App._display`, which the screen calls with each compositor
update: headless, that is the frame fully rendered, minus writing it to a terminal.

Samples are interleaved (ours, calculator, calculator, ours, ...) so that machine noise
hits both alike; start-up has one unrecorded warm-up each (it also writes the .pyc
files), key presses five. Both run with Python's bytecode cache, as an installed program
does: a PYTHONDONTWRITEBYTECODE in the environment is dropped for the children (see
child_env).

Target: our start-up (median) within 1.2 x the calculator's.

The calculator pins an old Textual but runs on ours; when it is not importable, this
downloads its wheel with pip (no dependencies) into .bench/ and puts that on the path.

    .venv/bin/python bench/bench_terminal.py [--n 15] [--keys 200] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cardio.card import profiles

REPO = Path(__file__).resolve().parent.parent
TARGET = 1.2
PROFILE = "employee-new"
CALC_VERSION = "0.0.2"
CALC_DIR = REPO / ".bench" / f"textual-calculator-{CALC_VERSION}"
PYCACHE = REPO / ".venv" / "pycache"  # as in the Makefile
APPS = ("ours", "calc")
LABELS = {"ours": "pos-terminal", "calc": "calculator"}
SCREENS = {"ours": "MenuScreen", "calc": "Screen"}  # the first usable screen of each
WARMUP_STARTS = 1
WARMUP_KEYS = 5
TIMEOUT = 60.0
PHASES = (
    ("python_ms", "Python start-up"),
    ("import_textual_ms", "import textual.app"),
    ("import_app_ms", "import app module"),
    ("build_ms", "build app"),
    ("run_to_frame_ms", "run to first frame"),
    ("frame_to_ready_ms", "first frame to usable"),
)


def now_ns() -> int:
    """CLOCK_MONOTONIC: one clock for this process and its children."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


# The child: `python -c CHILD start|keys ours|calc CARD`. It imports nothing before its
# first timestamp but `time`, so the phases it reports are the app's own.
CHILD = r'''
import time
MONO = time.CLOCK_MONOTONIC
t_main = time.clock_gettime_ns(MONO)
import sys
mode, which, card = sys.argv[1:4]
import textual.app
t_textual = time.clock_gettime_ns(MONO)
if which == "ours":
    from terminal.cli import build, parse_args
    t_import = time.clock_gettime_ns(MONO)
    app = build(parse_args(["--card", card]))
else:
    from textual_calculator.calculator import CalculatorApp
    t_import = time.clock_gettime_ns(MONO)
    app = CalculatorApp()
t_built = time.clock_gettime_ns(MONO)

import asyncio
import json
import os

frames = []  # when each compositor update reached the (headless) display
probe = {"expected": None, "shown": None, "done": None}
real_display = app._display


def display(screen, renderable):
    real_display(screen, renderable)
    if renderable is not None and not app._batch_count:
        t = time.clock_gettime_ns(MONO)
        frames.append(t)
        if (probe["done"] is None and probe["expected"] is not None
                and probe["shown"] == probe["expected"]):
            probe["done"] = t


app._display = display


def send(obj):
    os.write(1, (json.dumps(obj) + "\n").encode())  # sys.stdout is Textual's while it runs


async def settle(pilot):
    """Until the pressed key's highlight is off and that frame is drawn."""
    while app.screen.query(".-active"):
        await asyncio.sleep(0.005)
    await pilot.pause()


async def start_up(pilot):
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    send({"t_main": t_main, "t_textual": t_textual, "t_import": t_import,
          "t_built": t_built, "t_first_frame": frames[0] if frames else None,
          "t_ready": frames[-1] if frames else None, "frames": len(frames),
          "screen": type(app.screen).__name__})
    app.exit()


async def keys(pilot):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await pilot.pause()
    if which == "ours":
        await pilot.press("1")  # the menu's payment: asks for the amount
        await settle(pilot)
    clear = "delete" if which == "ours" else "c"
    target = app.screen.query_one("#entry" if which == "ours" else "#numbers")
    real_render = target.render

    def render():
        probe["shown"] = target.value
        return real_render()

    target.render = render
    typed, count = "", 0
    send({"ready": type(app.screen).__name__})
    while (await reader.readline()).strip() == b"k":
        if len(typed) >= 7:
            await pilot.press(clear)
            await settle(pilot)
            typed = ""
        key = "123456789"[count % 9]
        count += 1
        expected = typed + key
        probe.update(expected=expected, shown=None, done=None)
        n_frames = len(frames)
        t0 = time.clock_gettime_ns(MONO)
        await pilot.press(key)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        t_pilot = time.clock_gettime_ns(MONO)
        deadline = t_pilot + 5_000_000_000
        while probe["done"] is None and time.clock_gettime_ns(MONO) < deadline:
            await asyncio.sleep(0.001)
        if probe["done"] is None or target.value != expected:
            send({"error": f"key {key}: shows {target.value!r}, expected {expected!r}, "
                           f"frame {probe['done']}"})
            break
        frames_for_key = len(frames) - n_frames
        typed = expected
        send({"frame_ns": probe["done"] - t0, "pilot_ns": t_pilot - t0,
              "frames": frames_for_key})
        await settle(pilot)
    app.exit()


app.run(headless=True, size=(80, 24), auto_pilot=start_up if mode == "start" else keys)
'''


# --- the calculator -------------------------------------------------------------------


def calculator_path() -> Path | None:
    """None when textual_calculator imports as is; else the folder of its unpacked wheel,
    downloaded once (pip, no dependencies: it pins an old Textual but runs on ours)."""
    if importlib.util.find_spec("textual_calculator") is not None:
        return None
    if not (CALC_DIR / "textual_calculator" / "calculator.py").exists():
        CALC_DIR.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CALC_DIR.parent) as tmp:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "--only-binary=:all:",
                    "--dest",
                    tmp,
                    f"textual-calculator=={CALC_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=300,
            )
            wheels = sorted(Path(tmp).glob("textual_calculator-*.whl"))
            if result.returncode != 0 or not wheels:
                raise SystemExit(
                    "could not download textual-calculator:\n" + result.stdout + result.stderr
                )
            unpacked = Path(tmp) / "unpacked"
            with zipfile.ZipFile(wheels[0]) as wheel:
                wheel.extractall(unpacked)
            shutil.rmtree(CALC_DIR, ignore_errors=True)
            unpacked.rename(CALC_DIR)
    sys.path.insert(0, str(CALC_DIR))
    importlib.invalidate_caches()
    return CALC_DIR


def child_env(extra_path: Path | None) -> dict[str, str]:
    """The same environment for both apps: no TEXTUAL_* settings (devtools, FPS, ...), and
    Python's bytecode cache on, as for an installed program. PYTHONDONTWRITEBYTECODE would
    have every start compile our modules from source (about 40 ms here) while Textual's
    come precompiled from its wheel; when it is set, the cache goes where `make test`
    puts it (.venv/pycache), not into the source folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTUAL")}
    if env.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(extra_path), env.get("PYTHONPATH", "")) if p
        )
    return env


# --- measurement ----------------------------------------------------------------------


def ms_summary(values_ms: list[float]) -> dict[str, float | int]:
    n = len(values_ms)
    return {
        "n": n,
        "mean_ms": statistics.fmean(values_ms),
        "median_ms": statistics.median(values_ms),
        "p90_ms": statistics.quantiles(values_ms, n=10)[-1] if n >= 2 else values_ms[0],
        "min_ms": min(values_ms),
    }


@dataclass
class Run:
    """Where children run: a card file, a working folder, an environment."""

    card: Path
    cwd: Path
    env: dict[str, str]

    def argv(self, mode: str, which: str) -> list[str]:
        return [sys.executable, "-c", CHILD, mode, which, str(self.card)]


@dataclass
class StartSamples:
    totals_ms: list[float] = field(default_factory=list)
    first_frame_ms: list[float] = field(default_factory=list)
    phases_ms: dict[str, list[float]] = field(
        default_factory=lambda: {key: [] for key, _ in PHASES}
    )
    frames: list[int] = field(default_factory=list)


def start_once(run: Run, which: str) -> dict[str, Any]:
    t0 = now_ns()
    proc = subprocess.run(
        run.argv("start", which),
        capture_output=True,
        text=True,
        cwd=run.cwd,
        env=run.env,
        timeout=TIMEOUT,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(
            f"{LABELS[which]} start-up failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    doc = json.loads(lines[-1])
    if doc["screen"] != SCREENS[which] or doc["t_ready"] is None:
        raise SystemExit(
            f"{LABELS[which]}: ended on screen {doc['screen']} "
            f"after {doc['frames']} frames, not on {SCREENS[which]}"
        )
    doc["t0"] = t0
    return doc


def record_start(samples: StartSamples, doc: dict[str, Any]) -> None:
    ms = 1e-6
    samples.totals_ms.append((doc["t_ready"] - doc["t0"]) * ms)
    samples.first_frame_ms.append((doc["t_first_frame"] - doc["t0"]) * ms)
    marks = [
        doc[k]
        for k in ("t0", "t_main", "t_textual", "t_import", "t_built", "t_first_frame", "t_ready")
    ]
    for (key, _), a, b in zip(PHASES, marks[:-1], marks[1:], strict=True):
        samples.phases_ms[key].append((b - a) * ms)
    samples.frames.append(doc["frames"])


def measure_start(run: Run, rounds: int) -> dict[str, StartSamples]:
    samples = {which: StartSamples() for which in APPS}
    for i in range(WARMUP_STARTS + rounds):
        order = APPS if i % 2 == 0 else APPS[::-1]
        for which in order:
            doc = start_once(run, which)
            if i >= WARMUP_STARTS:
                record_start(samples[which], doc)
        progress(
            f"start-up {i + 1 - WARMUP_STARTS}/{rounds}"
            if i >= WARMUP_STARTS
            else "start-up warm-up"
        )
    return samples


class KeyChild:
    """One app in its own process, pressing one digit each time it is asked."""

    def __init__(self, run: Run, which: str) -> None:
        self.which = which
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            run.argv("keys", which),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            cwd=run.cwd,
            env=run.env,
        )
        self.selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)

    def fail(self, why: str) -> SystemExit:
        self.stderr.seek(0)
        err = self.stderr.read().decode("utf-8", "replace")
        return SystemExit(f"{LABELS[self.which]} key process: {why}\n{err}")

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        if not self.selector.select(TIMEOUT):
            raise self.fail(f"no answer in {TIMEOUT:.0f} s")
        line = self.proc.stdout.readline()
        if not line:
            raise self.fail(f"exited ({self.proc.wait()})")
        doc = json.loads(line)
        if "error" in doc:
            raise self.fail(doc["error"])
        return doc

    def press(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"k\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(b"q\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.selector.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


@contextlib.contextmanager
def key_children(run: Run) -> Iterator[dict[str, KeyChild]]:
    children: dict[str, KeyChild] = {}
    try:
        for which in APPS:
            children[which] = child = KeyChild(run, which)
            ready = child.read()
            expected = "AmountScreen" if which == "ours" else SCREENS[which]
            if ready.get("ready") != expected:
                raise child.fail(f"ready on {ready.get('ready')}, not {expected}")
        yield children
    finally:
        for child in children.values():
            child.close()


def measure_keys(run: Run, presses: int) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {
        which: {"frame_ms": [], "pilot_ms": [], "frames": []} for which in APPS
    }
    with key_children(run) as children:
        for i in range(WARMUP_KEYS + presses):
            order = APPS if i % 2 == 0 else APPS[::-1]
            for which in order:
                doc = children[which].press()
                if i >= WARMUP_KEYS:
                    out[which]["frame_ms"].append(doc["frame_ns"] * 1e-6)
                    out[which]["pilot_ms"].append(doc["pilot_ns"] * 1e-6)
                    out[which]["frames"].append(doc["frames"])
            if i >= WARMUP_KEYS and (i + 1 - WARMUP_KEYS) % 50 == 0:
                progress(f"key presses {i + 1 - WARMUP_KEYS}/{presses}")
    return out


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def measure(rounds: int, presses: int) -> dict[str, Any]:
    extra = calculator_path()
    with tempfile.TemporaryDirectory(prefix="bench-terminal-") as tmp:
        folder = Path(tmp)
        card = folder / "card.json"
        profiles.new_card(PROFILE, card)
        run = Run(card=card, cwd=folder, env=child_env(extra))
        starts = measure_start(run, rounds)
        keys = measure_keys(run, presses)

    apps: dict[str, Any] = {}
    for which in APPS:
        s, k = starts[which], keys[which]
        apps[which] = {
            "label": LABELS[which],
            "start_up": ms_summary(s.totals_ms),
            "start_up_samples_ms": s.totals_ms,
            "first_frame": ms_summary(s.first_frame_ms),
            "frames_to_screen": statistics.median(s.frames),
            "phases_median_ms": {key: statistics.median(v) for key, v in s.phases_ms.items()},
            "key_to_frame": ms_summary(k["frame_ms"]),
            "key_pilot_round_trip": ms_summary(k["pilot_ms"]),
            "frames_per_key": statistics.fmean(k["frames"]),
        }
    ours, calc = apps["ours"], apps["calc"]

    def ratio(what: str, stat: str) -> float:
        return float(ours[what][stat]) / float(calc[what][stat])

    ratios = {
        "start_up_median": ratio("start_up", "median_ms"),
        "start_up_mean": ratio("start_up", "mean_ms"),
        "key_to_frame_median": ratio("key_to_frame", "median_ms"),
        "key_to_frame_mean": ratio("key_to_frame", "mean_ms"),
        "key_pilot_round_trip_median": ratio("key_pilot_round_trip", "median_ms"),
    }
    return {
        "python": platform.python_version(),
        "textual": importlib.metadata.version("textual"),
        "calculator": importlib.metadata.version("textual-calculator"),
        "calculator_from": str(extra) if extra else "installed",
        "cpus": os.cpu_count(),
        "size": [80, 24],
        "start_up_rounds": rounds,
        "key_presses": presses,
        "warmup": {"start_up": WARMUP_STARTS, "key_presses": WARMUP_KEYS},
        "target_ratio": TARGET,
        "apps": apps,
        "ratios": ratios,
        "target_met": ratios["start_up_median"] <= TARGET,
    }


# --- output ---------------------------------------------------------------------------


def print_table(res: dict[str, Any]) -> None:
    apps = res["apps"]
    print(
        f"pos-terminal vs Textual's calculator example (textual-calculator "
        f"{res['calculator']}), headless {res['size'][0]}x{res['size'][1]}"
    )
    print(
        f"Textual {res['textual']}, Python {res['python']}, {res['cpus']} CPUs; "
        f"{res['start_up_rounds']} start-ups and {res['key_presses']} key presses each, "
        f"interleaved"
    )
    print()
    header = f"{'start-up (ms)':<30} {'mean':>8} {'median':>8} {'p90':>8} {'min':>8}"
    print(header)
    print("-" * len(header))
    for which in APPS:
        for what, label in (("start_up", "to usable screen"), ("first_frame", "to first frame")):
            s = apps[which][what]
            print(
                f"{apps[which]['label'] + ' ' + label:<30} {s['mean_ms']:>8.1f} "
                f"{s['median_ms']:>8.1f} {s['p90_ms']:>8.1f} {s['min_ms']:>8.1f}"
            )
    print()
    header = (
        f"{'where start-up goes (median ms)':<30}"
        + "".join(f" {LABELS[w]:>14}" for w in APPS)
        + f" {'difference':>11}"
    )
    print(header)
    print("-" * len(header))
    for key, label in PHASES:
        values = [apps[w]["phases_median_ms"][key] for w in APPS]
        print(
            f"{label:<30}"
            + "".join(f" {v:>14.1f}" for v in values)
            + f" {values[0] - values[1]:>+11.1f}"
        )
    frames = [apps[w]["frames_to_screen"] for w in APPS]
    print(f"{'frames until idle':<30}" + "".join(f" {f:>14g}" for f in frames))
    print()
    header = f"{'key press to redraw (ms)':<30} {'mean':>8} {'median':>8} {'p90':>8} {'min':>8}"
    print(header)
    print("-" * len(header))
    for which in APPS:
        for what, label in (
            ("key_to_frame", "to frame"),
            ("key_pilot_round_trip", "Pilot round trip"),
        ):
            s = apps[which][what]
            print(
                f"{apps[which]['label'] + ' ' + label:<30} {s['mean_ms']:>8.2f} "
                f"{s['median_ms']:>8.2f} {s['p90_ms']:>8.2f} {s['min_ms']:>8.2f}"
            )
    print(
        "frames per key: " + ", ".join(f"{LABELS[w]} {apps[w]['frames_per_key']:.2f}" for w in APPS)
    )
    print()
    r = res["ratios"]
    print(
        f"start-up pos-terminal / calculator: {r['start_up_median']:.2f} median, "
        f"{r['start_up_mean']:.2f} mean   target <= {res['target_ratio']}: "
        f"{'met' if res['target_met'] else 'NOT met'}"
    )
    print(
        f"key to frame pos-terminal / calculator: {r['key_to_frame_median']:.2f} median, "
        f"{r['key_to_frame_mean']:.2f} mean (Pilot round trip "
        f"{r['key_pilot_round_trip_median']:.2f} median)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n",
        type=int,
        default=15,
        help="start-up samples per app, one fresh process each (default 15)",
    )
    parser.add_argument("--keys", type=int, default=200, help="key presses per app (default 200)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.n < 2 or args.keys < 2:
        parser.error("--n and --keys must be at least 2")
    results = measure(args.n, args.keys)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

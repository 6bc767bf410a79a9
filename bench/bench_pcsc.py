"""How fast is an APDU through the real PC/SC stack? Our served card beside the stack's floor.

One APDU round trip is pyscard (`smartcard.scard`, the low-level API) -> pcscd ->
vsmartcard's vpcd driver -> TCP -> the card process, and back. Three cards take turns
in vpcd's slot 0, each a process of its own:

- floor: a do-nothing Python card that answers 9000 at once (GET ATR: our ATR, so that
  pcscd picks T=0 as it does for ours). It re-arms TCP_QUICKACK after every recv and
  replies with one sendall, as our bridge does, so it does not pay the 44 ms
  delayed ACK that Debian's vpcd provokes (cardio/vpcd.py explains). It is the
  cost of the stack alone.
- ours: `python -m cardio.cli serve CARD --vpcd 127.0.0.1:PORT` on a card file
  made from the profile employee-new.
- vicc: vsmartcard's own emulator (Debian vsmartcard-vpicc, card type iso7816), for
  comparison. It pays the 44 ms delayed ACK on every frame.

The APDU all three answer is GET CHALLENGE `00 84 00 00 08`. Ours and the floor
also get SELECT by DF name, GET DATA and READ RECORD. Rounds are interleaved (in each
round every card takes slot 0 once, in a rotating order), so noise hits all alike.

Target: ours within 1.5x of the floor (median of GET CHALLENGE).

Then a payment's card work (issue 12), as the terminal does it: a warm reset (not
timed), `SocialSecurityCard(reader).read_info(MasterKeySource(fixture_issuer()))` (the
authenticity check and the reads), then VERIFY of the PIN, through cardio's PcscReader,
on our served card (profile employee-enabled). Every APDU it sends is recorded; the
floor then gets the same APDUs, byte for byte, through the same reader, timed the same
way. A third card, floor+disk, is the floor plus the durable writes our card makes in a
payment (its file, twice after EXTERNAL AUTHENTICATE and twice after VERIFY), with the
same function, size and folder. The three take turns as above.

Target: a payment within 1.2x of the floor's same APDUs (median).

The machine has one pcscd (Debian's ignores PCSCLITE_CSOCK_NAME). Like the tests,
this holds the machine lock /tmp/shebao-pos-pcsc.lock for its whole run. It also
starts its own pcscd (with a vpcd reader.conf on a free port pair) when none runs,
and stops it after.

    .venv/bin/python bench/bench_pcsc.py [--n 2000] [--n-vicc 100] [--rounds 20]
        [--payments 200] [--payment-rounds 10] [--payment] [--dir DIR] [--json] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gc
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import pcsc_stack as stack  # noqa: E402  (tests/pcsc_stack.py: stdlib only)

TARGET = 1.5
PROFILE = "employee-new"
PAYMENT_TARGET = 1.2
PAYMENT_PROFILE = "employee-enabled"  # PIN enabled: the payment's VERIFY is the real one
PAYMENT_PIN = "802613"  # employee-enabled's PIN (fixtures/README.md; a test card's)
WARMUP_PAYMENTS = 3  # payments after each connect that are not recorded
WARMUP = 20  # APDU cycles after each connect that are not recorded
WARMUP_VICC = 2

VICC = Path("/usr/bin/vicc")
VICC_PYTHON = Path("/usr/bin/python3")
VICC_LIB = Path("/usr/lib/python3/site-packages/virtualsmartcard")
CRYPTODOME = Path("/usr/lib/python3/dist-packages/Cryptodome")

SSSE_NAME = "sx1.sh.社会保障".encode("gbk")


@dataclass(frozen=True)
class Command:
    key: str
    label: str
    apdu: bytes
    expect_len: int  # response length with SW from ours (the floor always answers 9000)


GET_CHALLENGE = Command("get_challenge", "GET CHALLENGE", bytes.fromhex("0084000008"), 10)
# SELECT answers the SSSE's FCI (30 bytes); READ RECORD asks for record 07 with its exact
# Le (0B: tag, length, 9 bytes), as the card wants it (Le 00 gets 6C0B).
SELECT = Command("select_df_name", "SELECT by DF name", bytes.fromhex("00A404000F") + SSSE_NAME, 32)
GET_DATA = Command("get_data", "GET DATA C1", bytes.fromhex("80CA00C100"), 8)
READ_RECORD = Command("read_record", "READ RECORD", bytes.fromhex("00B2072C0B"), 13)  # SFI 5 #7
# Order matters for ours: READ RECORD by SFI needs the SSSE DF that SELECT makes current.
OURS_COMMANDS = (GET_CHALLENGE, SELECT, GET_DATA, READ_RECORD)
VICC_COMMANDS = (GET_CHALLENGE,)


# --- the floor card -------------------------------------------------------------------


# The commands after which our card writes its file twice (the try counter decremented
# durably before the comparison, restored after: cardio/card/card.py VERIFY,
# cardio/card/keyed.py EXTERNAL AUTHENTICATE): what the floor+disk card writes too.
DURABLE_WRITES = 2


def writes_after(payload: bytes) -> bool:
    """EXTERNAL AUTHENTICATE, or VERIFY with a PIN (an empty VERIFY writes nothing)."""
    return len(payload) > 5 and payload[1] in (0x82, 0x20)


def floor_card(host: str, port: int, atr: bytes, writes: tuple[Path, int] | None = None) -> int:
    """The do-nothing card: 9000 to every APDU, the ATR to GET ATR, nothing else.

    With `writes` (a path and a size), the floor+disk card: after the commands that make
    our card write its file (writes_after), it makes the same durable writes, with
    cardio.card.store.atomic_write, of as many bytes as our card file, in its folder.

    Runs in its own process (`bench_pcsc.py --floor-card HOST:PORT ATR`) until SIGTERM."""
    write = None
    if writes is not None:
        from cardio.card.store import atomic_write

        path, size = writes
        data = bytes(size)

        def write() -> None:
            for _ in range(DURABLE_WRITES):
                atomic_write(path, data)

    sock = socket.create_connection((host, port))
    tcp, quickack = socket.IPPROTO_TCP, socket.TCP_QUICKACK
    sock.setsockopt(tcp, socket.TCP_NODELAY, 1)
    sock.setsockopt(tcp, quickack, 1)
    recv, setopt, sendall = sock.recv, sock.setsockopt, sock.sendall
    atr_frame = len(atr).to_bytes(2, "big") + atr
    ok_frame = b"\x00\x02\x90\x00"

    def recv_exact(n: int) -> bytes:
        data = recv(n)
        setopt(tcp, quickack, 1)  # the kernel clears it: re-arm after every recv
        while len(data) < n:
            more = recv(n - len(data))
            setopt(tcp, quickack, 1)
            if not more:
                raise EOFError
            data += more
        if not data:
            raise EOFError
        return data

    try:
        while True:
            length = int.from_bytes(recv_exact(2), "big")
            payload = recv_exact(length)
            if length == 1:
                if payload[0] == 0x04:  # GET ATR; power on/off and reset get no reply
                    sendall(atr_frame)
            else:
                if write is not None and writes_after(payload):
                    write()
                sendall(ok_frame)
    except (EOFError, OSError):
        return 0


# --- the stack ------------------------------------------------------------------------


@contextlib.contextmanager
def machine_lock() -> Iterator[None]:
    """The lock every user of this machine's one pcscd takes (tests/pcsc_stack.py)."""
    fd = os.open(stack.MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"waiting for {stack.MACHINE_LOCK} (someone else is using pcscd)...",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass
class Stack:
    """pcscd with vpcd (ours, or one already running), and the card processes we start."""

    workdir: Path
    port: int = 0
    owned: bool = False
    pcscd: stack.PcscStack | None = None
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def reader(self) -> str:
        return stack.slot_name(0)

    def start(self) -> None:
        """Call with the machine lock held."""
        readers = stack._readers() if stack.PCSCD_SOCKET.exists() else None
        if readers is not None:
            if self.reader not in readers:
                raise RuntimeError(
                    f"a pcscd runs here without vpcd readers ({readers}); "
                    "stop it or add /etc/reader.conf.d/vpcd, then rerun"
                )
            self.port = int(os.environ.get("SHEBAO_VPCD_PORT", stack.DEBIAN_VPCD_PORT))
            if stack.card_present(self.reader):
                raise RuntimeError(f"{self.reader} already holds a card; remove it first")
            return
        self.pcscd = stack.PcscStack(self.workdir, port=stack.pick_port_pair(), owned=True)
        self.owned = True
        self.port = self.pcscd.port
        self.pcscd._launch()  # the tests' own launcher; the lock is ours already

    def close(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        if self.pcscd is not None:
            self.pcscd.stop_pcscd()
            self.pcscd = None

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> tuple[subprocess.Popen, Path]:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
            )
        self.procs.append(proc)
        return proc, log

    def wait_present(self, proc: subprocess.Popen, log: Path, what: str) -> None:
        deadline = time.monotonic() + stack.WAIT
        while time.monotonic() < deadline:
            if stack.card_present(self.reader):
                return
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        stop_process(proc)
        raise CardUnavailable(
            f"{what} never showed up in {self.reader} "
            f"(exit status {proc.poll()}); its log ends:\n{tail(log)}"
        )

    def wait_absent(self) -> None:
        stack.wait_for(lambda: not stack.card_present(self.reader), f"{self.reader} to be empty")


class CardUnavailable(Exception):
    pass


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text("utf-8", "replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty)"


# --- the cards ------------------------------------------------------------------------


class Card:
    name = ""
    commands: tuple[Command, ...] = ()

    def __init__(self, st: Stack) -> None:
        self.stack = st
        self.proc: subprocess.Popen | None = None

    def argv(self) -> tuple[list[str], dict[str, str] | None, Path | None]:
        raise NotImplementedError

    def insert(self) -> None:
        argv, env, cwd = self.argv()
        self.proc, log = self.stack.spawn(self.name, argv, env, cwd)
        self.stack.wait_present(self.proc, log, self.name)

    def remove(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.stack.procs.remove(self.proc)
            self.proc = None
        self.stack.wait_absent()


class FloorCard(Card):
    name = "floor"
    commands = OURS_COMMANDS

    def __init__(self, st: Stack, atr: bytes) -> None:
        super().__init__(st)
        self.atr = atr  # ours: so that pcscd picks the same protocol

    def argv(self):
        return (
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--floor-card",
                f"127.0.0.1:{self.stack.port}",
                self.atr.hex(),
            ],
            None,
            None,
        )


class DiskFloorCard(FloorCard):
    """The floor, plus our card's durable writes (floor_card's `writes`)."""

    name = "floor+disk"

    def __init__(self, st: Stack, atr: bytes, path: Path, size: int) -> None:
        super().__init__(st, atr)
        self.path, self.size = path, size

    def argv(self):
        argv, env, cwd = super().argv()
        return [*argv, "--floor-writes", str(self.path), str(self.size)], env, cwd


class OurCard(Card):
    name = "ours"
    commands = OURS_COMMANDS

    def __init__(self, st: Stack, path: Path) -> None:
        super().__init__(st)
        self.path = path

    def argv(self):
        return (
            [
                sys.executable,
                "-m",
                "cardio.cli",
                "serve",
                str(self.path),
                "--vpcd",
                f"127.0.0.1:{self.stack.port}",
            ],
            None,
            REPO,
        )


class ViccCard(Card):
    name = "vicc"
    commands = VICC_COMMANDS

    def __init__(self, st: Stack) -> None:
        super().__init__(st)
        shim = st.workdir / "vicc_shim"
        shim.mkdir(exist_ok=True)
        link = shim / "Crypto"  # vicc imports PyCrypto's `Crypto`; Debian ships `Cryptodome`
        if not link.exists():
            link.symlink_to(CRYPTODOME)
        self.env = {**os.environ, "PYTHONPATH": f"{VICC_LIB}:{shim}"}

    @staticmethod
    def missing() -> str | None:
        for path, package in (
            (VICC, "vsmartcard-vpicc"),
            (VICC_LIB, "python3-virtualsmartcard"),
            (CRYPTODOME, "python3-pycryptodome"),
            (VICC_PYTHON, "python3"),
        ):
            if not path.exists():
                return f"{path} is missing (Debian package {package}; `make bench` installs it)"
        return None

    def check_import(self) -> str | None:
        try:
            result = subprocess.run(
                [str(VICC_PYTHON), "-c", "import virtualsmartcard.VirtualSmartcard"],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.SubprocessError) as e:
            return f"vicc's library could not be tried: {e}"
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            return "vicc's library does not import: " + (lines[-1] if lines else "?")
        return None

    def argv(self):
        return (
            [
                str(VICC_PYTHON),
                str(VICC),
                "-t",
                "iso7816",
                "-H",
                "127.0.0.1",
                "-P",
                str(self.stack.port),
            ],
            self.env,
            None,
        )


# --- measurement ----------------------------------------------------------------------


@dataclass
class Series:
    card: str
    command: Command
    times_ns: list[int] = field(default_factory=list)
    visits: list[int] = field(default_factory=list)  # len(times_ns) after each visit

    def visit_medians_ms(self) -> list[float]:
        bounds = [0, *self.visits]
        return [
            statistics.median(self.times_ns[a:b]) / 1e6
            for a, b in zip(bounds, bounds[1:], strict=False)
            if b > a
        ]

    def summary(self) -> dict[str, object]:
        ms = [t / 1e6 for t in self.times_ns]
        n = len(ms)
        visits = self.visit_medians_ms()
        return {
            "card": self.card,
            "apdu": self.command.key,
            "label": self.command.label,
            "apdu_hex": self.command.apdu.hex(" ").upper(),
            "n": n,
            "mean_ms": statistics.fmean(ms),
            "median_ms": statistics.median(ms),
            "p90_ms": statistics.quantiles(ms, n=10)[-1] if n >= 2 else ms[0],
            "min_ms": min(ms),
            "max_ms": max(ms),
            "visit_medians_ms": visits,  # one per round: how much the rounds disagree
        }


class Client:
    """pyscard's low-level API, the same for every card."""

    def __init__(self, reader: str) -> None:
        from smartcard import scard

        self.scard = scard
        self.reader = reader
        hr, self.ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        self._check(hr, "SCardEstablishContext")
        self.hcard = None
        self.pci = None

    def _check(self, hr: int, what: str) -> None:
        if hr != self.scard.SCARD_S_SUCCESS:
            message = self.scard.SCardGetErrorMessage(hr)
            raise RuntimeError(f"{what}: {message} ({hr & 0xFFFFFFFF:#x})")

    def connect(self) -> int:
        scard = self.scard
        deadline = time.monotonic() + 5
        while True:
            hr, hcard, protocol = scard.SCardConnect(
                self.ctx,
                self.reader,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if hr == scard.SCARD_S_SUCCESS:
                break
            if time.monotonic() > deadline:
                self._check(hr, "SCardConnect")
            time.sleep(0.05)
        self.hcard = hcard
        self.pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1
        return protocol

    def transmit(self, apdu: list[int]) -> list[int]:
        hr, response = self.scard.SCardTransmit(self.hcard, self.pci, apdu)
        self._check(hr, "SCardTransmit")
        return response

    def disconnect(self) -> None:
        if self.hcard is not None:
            self.scard.SCardDisconnect(self.hcard, self.scard.SCARD_UNPOWER_CARD)
            self.hcard = None

    def close(self) -> None:
        self.disconnect()
        self.scard.SCardReleaseContext(self.ctx)


def check_response(card: str, command: Command, response: list[int]) -> None:
    if response[-2:] != [0x90, 0x00]:
        raise RuntimeError(
            f"{card} answered {command.label} with "
            f"{bytes(response).hex(' ').upper()}, not ... 90 00"
        )
    if card == "ours" and len(response) != command.expect_len:
        raise RuntimeError(
            f"ours answered {command.label} with {len(response)} bytes, not {command.expect_len}"
        )
    if card == "vicc" and command is GET_CHALLENGE and len(response) != 10:
        raise RuntimeError(f"vicc answered GET CHALLENGE with {len(response)} bytes, not 10")


def visit(
    card: Card, client: Client, cycles: int, warmup: int, series: dict[tuple[str, str], Series]
) -> dict[str, object]:
    """Insert the card, connect, time `cycles` passes over its APDUs, disconnect, remove."""
    t0 = time.monotonic()
    card.insert()
    inserted = time.monotonic() - t0
    try:
        protocol = client.connect()
        apdus = [(c, list(c.apdu), series[card.name, c.key]) for c in card.commands]
        transmit, clock = client.transmit, time.perf_counter_ns
        for _ in range(warmup):
            for command, apdu, _s in apdus:
                check_response(card.name, command, transmit(apdu))
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for _ in range(cycles):
                for command, apdu, s in apdus:
                    start = clock()
                    response = transmit(apdu)
                    s.times_ns.append(clock() - start)
                    check_response(card.name, command, response)
        finally:
            if gc_was_enabled:
                gc.enable()
            for _c, _a, s in apdus:
                s.visits.append(len(s.times_ns))
    finally:
        client.disconnect()
        card.remove()
    t0_protocol = client.scard.SCARD_PROTOCOL_T0
    return {
        "card": card.name,
        "protocol": "T=0" if protocol == t0_protocol else "T=1",
        "insert_s": round(inserted, 3),
    }


# --- a payment's card work -------------------------------------------------------------

# What each APDU of a payment is, by INS (and SELECT's P1): the rows of the breakdown.
_KINDS = {
    0xA4: "SELECT",
    0xB2: "READ RECORD",
    0x88: "INTERNAL AUTHENTICATE",
    0x84: "GET CHALLENGE",
    0x82: "EXTERNAL AUTHENTICATE",
    0xCA: "GET DATA",
    0x20: "VERIFY",
    0xC0: "GET RESPONSE",
}


def apdu_kind(apdu: bytes) -> str:
    if len(apdu) >= 4 and apdu[1] == 0xA4:
        return "SELECT by DF name" if apdu[2] == 0x04 else "SELECT EF"
    return _KINDS.get(apdu[1], f"INS {apdu[1]:02X}") if len(apdu) >= 2 else "?"


class ApduClock:
    """Wraps one PcscReader's `_exchange` (every APDU it sends, under `transmit`'s
    61xx / 6Cxx handling): records each APDU and its round trip."""

    def __init__(self, reader) -> None:
        self._inner = reader._exchange
        reader._exchange = self  # the instance's attribute shadows the method
        self.sent: list[tuple[bytes, int]] = []

    def __call__(self, apdu: bytes) -> bytes:
        clock = time.perf_counter_ns
        start = clock()
        response = self._inner(apdu)
        self.sent.append((apdu, clock() - start))
        return response


class TimedKeys:
    """The key source, with the time spent in its cryptograms (the host's crypto)."""

    def __init__(self, keys) -> None:
        self._keys = keys
        self.ns = 0

    def _timed(self, method, *args):
        start = time.perf_counter_ns()
        try:
            return method(*args)
        finally:
            self.ns += time.perf_counter_ns() - start

    def terminal_number(self) -> str:
        return self._keys.terminal_number()

    def internal_auth(self, *args):
        return self._timed(self._keys.internal_auth, *args)

    def external_auth(self, *args):
        return self._timed(self._keys.external_auth, *args)

    def secure_apdu(self, *args):
        return self._timed(self._keys.secure_apdu, *args)


@dataclass
class PaymentSeries:
    """One card's payments: each one's total, its APDUs' round trips, its host parts."""

    card: str
    totals_ns: list[int] = field(default_factory=list)
    resets_ns: list[int] = field(default_factory=list)
    apdus_ns: list[list[int]] = field(default_factory=list)  # per payment, in order
    crypto_ns: list[int] = field(default_factory=list)  # ours: MasterKeySource's time
    atr_ns: list[int] = field(default_factory=list)  # ours: peek_atr (SCardGetStatusChange)
    visits: list[int] = field(default_factory=list)
    card_cpu_ns: int = 0  # the card process's CPU time over the timed payments
    host_cpu_ns: int = 0  # this process's (the terminal's side), resets included

    def visit_medians_ms(self) -> list[float]:
        bounds = [0, *self.visits]
        return [
            statistics.median(self.totals_ns[a:b]) / 1e6
            for a, b in zip(bounds, bounds[1:], strict=False)
            if b > a
        ]


def _median_ms(values: list[int]) -> float:
    return statistics.median(values) / 1e6 if values else 0.0


def _p90_ms(values: list[int]) -> float:
    if len(values) < 2:
        return _median_ms(values)
    return statistics.quantiles(values, n=10)[-1] / 1e6


class Payment:
    """One payment's card work as the terminal does it (terminal/worker.py): a warm
    reset, then `read_info` with the issuer's keys (the authenticity check and the
    reads), then VERIFY of the PIN. The floor gets ours' APDUs, byte for byte."""

    def __init__(self, reader_name: str) -> None:
        from cardio.issuer import fixture_issuer
        from cardio.keysource import MasterKeySource
        from cardio.readers.pcsc import PcscReader

        self.reader = PcscReader(reader_name)
        self.apdus = ApduClock(self.reader)
        self.keys = TimedKeys(MasterKeySource(fixture_issuer()))
        self.script: list[bytes] | None = None  # ours' APDUs, for the floor
        self.atr_ns = 0
        peek = self.reader.peek_atr

        def timed_peek() -> bytes | None:
            start = time.perf_counter_ns()
            try:
                return peek()
            finally:
                self.atr_ns += time.perf_counter_ns() - start

        self.reader.peek_atr = timed_peek  # type: ignore[method-assign]

    def ours(self) -> None:
        from cardio.protocol import SocialSecurityCard

        card = SocialSecurityCard(self.reader)
        info = card.read_info(self.keys)
        outcome = card.verify(PAYMENT_PIN)
        if not outcome.ok or info.card_number is None or info.scheme is None:
            raise RuntimeError(
                f"ours: the payment's card work failed (VERIFY {outcome.sw:04X}, card number "
                f"{info.card_number!r}, scheme {info.scheme!r})"
            )

    def floor(self) -> None:
        assert self.script is not None
        transmit = self.reader.transmit
        for apdu in self.script:
            response = transmit(apdu)
            if response[-2:] != b"\x90\x00":
                raise RuntimeError(f"floor answered {response.hex(' ').upper()}, not 90 00")

    def one(self, name: str, series: PaymentSeries | None) -> None:
        clock = time.perf_counter_ns
        start = clock()
        self.reader.reset()
        reset = clock() - start
        self.apdus.sent.clear()
        self.keys.ns = self.atr_ns = 0
        work = self.ours if name == "ours" else self.floor
        start = clock()
        work()
        total = clock() - start
        sent = self.apdus.sent
        if name == "ours":
            script = [apdu for apdu, _ in sent]
            if self.script is None:
                self.script = script
            elif len(script) != len(self.script):
                raise RuntimeError(
                    f"ours sent {len(script)} APDUs in a payment, {len(self.script)} before"
                )
        if series is not None:
            series.totals_ns.append(total)
            series.resets_ns.append(reset)
            series.apdus_ns.append([ns for _, ns in sent])
            series.crypto_ns.append(self.keys.ns)
            series.atr_ns.append(self.atr_ns)

    def close(self) -> None:
        self.reader.close()


def process_cpu_ns(pid: int) -> int:
    """The CPU time of all a process's threads so far (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def payment_visit(card: Card, payment: Payment, count: int, series: PaymentSeries) -> None:
    """Insert the card, connect, time `count` payments (each after a warm reset)."""
    card.insert()
    assert card.proc is not None
    try:
        payment.reader.connect()
        for _ in range(WARMUP_PAYMENTS):
            payment.one(card.name, None)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        card_cpu, host_cpu = process_cpu_ns(card.proc.pid), time.process_time_ns()
        try:
            for _ in range(count):
                payment.one(card.name, series)
        finally:
            if gc_was_enabled:
                gc.enable()
            series.card_cpu_ns += process_cpu_ns(card.proc.pid) - card_cpu
            series.host_cpu_ns += time.process_time_ns() - host_cpu
            series.visits.append(len(series.totals_ns))
    finally:
        payment.reader.disconnect()
        card.remove()


def measure_payment(args: argparse.Namespace, workdir: Path, st: Stack) -> dict[str, object]:
    """Ours' payments and the floor's same APDUs, in interleaved rounds (ours first in
    the first round: its APDUs are the floor's script)."""
    from cardio.card import profiles
    from cardio.card.card import ATR_PREFIX

    card_path = workdir / "payment-card.json"
    state = profiles.new_card(PAYMENT_PROFILE, card_path)
    atr = ATR_PREFIX + state.historical
    size = card_path.stat().st_size
    cards: list[Card] = [
        OurCard(st, card_path),
        FloorCard(st, atr),
        DiskFloorCard(st, atr, workdir / "floor-disk.json", size),
    ]
    series = {card.name: PaymentSeries(card.name) for card in cards}
    counts = split(args.payments, args.payment_rounds)
    payment = Payment(st.reader)
    try:
        for r in range(args.payment_rounds):
            order = cards[r % len(cards) :] + cards[: r % len(cards)]
            for card in order:
                if counts[r] == 0:
                    continue
                if not args.json:
                    print(
                        f"payment round {r + 1}/{args.payment_rounds}: {card.name}",
                        file=sys.stderr,
                        flush=True,
                    )
                payment_visit(card, payment, counts[r], series[card.name])
    finally:
        payment.close()
    return payment_summary(series, payment.script or [])


def payment_summary(series: dict[str, PaymentSeries], script: list[bytes]) -> dict[str, object]:
    kinds: dict[str, list[int]] = {}  # kind -> positions in the script
    for i, apdu in enumerate(script):
        kinds.setdefault(apdu_kind(apdu), []).append(i)
    cards: dict[str, dict[str, object]] = {}
    for name, s in series.items():
        apdu_sums = [sum(a) for a in s.apdus_ns]
        host = [t - a for t, a in zip(s.totals_ns, apdu_sums, strict=True)]
        cards[name] = {
            "payments": len(s.totals_ns),
            "mean_ms": statistics.fmean(s.totals_ns) / 1e6,
            "median_ms": _median_ms(s.totals_ns),
            "p90_ms": _p90_ms(s.totals_ns),
            "min_ms": min(s.totals_ns) / 1e6,
            "visit_medians_ms": s.visit_medians_ms(),
            "reset_median_ms": _median_ms(s.resets_ns),
            "apdus_median_ms": _median_ms(apdu_sums),
            "host_median_ms": _median_ms(host),
            "crypto_median_ms": _median_ms(s.crypto_ns),
            "peek_atr_median_ms": _median_ms(s.atr_ns),
            "card_cpu_ms_per_payment": s.card_cpu_ns / len(s.totals_ns) / 1e6,
            "host_cpu_ms_per_payment": s.host_cpu_ns / len(s.totals_ns) / 1e6,
            # per kind of APDU: how many a payment sends, their summed time (median)
            "by_kind_median_ms": {
                kind: _median_ms([sum(a[i] for i in where) for a in s.apdus_ns])
                for kind, where in kinds.items()
            },
        }

    def ratio(a: str, b: str) -> dict[str, float]:
        x, y = cards[a], cards[b]
        return {
            "median": float(x["median_ms"]) / float(y["median_ms"]),  # type: ignore[arg-type]
            "mean": float(x["mean_ms"]) / float(y["mean_ms"]),  # type: ignore[arg-type]
        }

    ratios = {
        "ours/floor": ratio("ours", "floor"),
        "ours/floor+disk": ratio("ours", "floor+disk"),
        "floor+disk/floor": ratio("floor+disk", "floor"),
    }
    headline = ratios["ours/floor"]["median"]
    return {
        "profile": PAYMENT_PROFILE,
        "work": "reader.reset() (not timed); SocialSecurityCard(reader).read_info("
        "MasterKeySource(fixture_issuer())); .verify(PIN)",
        "apdus_per_payment": len(script),
        "apdu_kinds": {kind: len(where) for kind, where in kinds.items()},
        "durable_writes_per_payment": DURABLE_WRITES * sum(map(writes_after, script)),
        "warmup_payments_per_connect": WARMUP_PAYMENTS,
        "cards": cards,
        "ratios": ratios,
        "target": {
            "text": f"a payment within {PAYMENT_TARGET}x of the floor's same APDUs (median)",
            "ratio": PAYMENT_TARGET,
            "value": headline,
            "met": headline <= PAYMENT_TARGET,
        },
    }


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    """The per-APDU measurement (unless --payment), then the payment's (unless
    --payments 0), on one pcscd."""
    st = Stack(workdir)
    results: dict[str, object] = {}
    try:
        st.start()
        if not args.payment:
            results.update(measure_apdus(args, workdir, st))  # at the top, as before
        if args.payments > 0:
            results["payment"] = measure_payment(args, workdir, st)
    finally:
        st.close()
    return {
        "stack": "pyscard smartcard.scard -> pcscd -> vpcd (libifdvpcd) -> TCP -> card",
        "reader": st.reader,
        "vpcd_port": st.port,
        "pcscd_started_by_bench": st.owned,
        "pcscd_version": _pcscd_version(),
        "python": platform.python_version(),
        **results,
    }


def measure_apdus(args: argparse.Namespace, workdir: Path, st: Stack) -> dict[str, object]:
    from cardio.card import profiles
    from cardio.card.card import ATR_PREFIX

    card_path = workdir / "card.json"
    state = profiles.new_card(PROFILE, card_path)
    atr = ATR_PREFIX + state.historical

    client: Client | None = None
    vicc_reason: str | None = None
    try:
        client = Client(st.reader)
        cards: list[Card] = [FloorCard(st, atr), OurCard(st, card_path)]
        if args.n_vicc > 0:
            vicc_reason = ViccCard.missing()
            if vicc_reason is None:
                vicc = ViccCard(st)
                vicc_reason = vicc.check_import()
                if vicc_reason is None:
                    cards.append(vicc)
        else:
            vicc_reason = "skipped (--n-vicc 0)"
        if vicc_reason:
            print(f"vicc: not measured: {vicc_reason}", file=sys.stderr, flush=True)

        series = {(card.name, c.key): Series(card.name, c) for card in cards for c in card.commands}
        cycles = {
            card.name: split(args.n_vicc if card.name == "vicc" else args.n, args.rounds)
            for card in cards
        }
        protocols: dict[str, str] = {}
        insert_times: dict[str, list[float]] = {card.name: [] for card in cards}
        for r in range(args.rounds):
            order = cards[r % len(cards) :] + cards[: r % len(cards)]
            for card in order:
                if cycles[card.name][r] == 0:
                    continue
                if not args.json:
                    print(f"round {r + 1}/{args.rounds}: {card.name}", file=sys.stderr, flush=True)
                warmup = WARMUP_VICC if card.name == "vicc" else WARMUP
                try:
                    info = visit(card, client, cycles[card.name][r], warmup, series)
                except (CardUnavailable, RuntimeError) as e:
                    if card.name != "vicc":
                        raise
                    vicc_reason = f"failed in round {r + 1}: {e}"
                    print(f"vicc: dropped: {vicc_reason}", file=sys.stderr, flush=True)
                    cards.remove(card)
                    for key in [k for k in series if k[0] == "vicc"]:
                        del series[key]
                    continue
                protocols[card.name] = str(info["protocol"])
                insert_times[card.name].append(float(info["insert_s"]))
    finally:
        if client is not None:
            client.close()

    results = [s.summary() for s in series.values() if s.times_ns]
    by = {(str(s["card"]), str(s["apdu"])): s for s in results}
    ratios: dict[str, dict[str, float]] = {}
    for command in OURS_COMMANDS:
        ours, floor = by.get(("ours", command.key)), by.get(("floor", command.key))
        if ours and floor:
            ratios[f"ours/floor {command.key}"] = _ratio(ours, floor)
    vicc_gc, ours_gc = by.get(("vicc", GET_CHALLENGE.key)), by.get(("ours", GET_CHALLENGE.key))
    if vicc_gc and ours_gc:
        ratios[f"vicc/ours {GET_CHALLENGE.key}"] = _ratio(vicc_gc, ours_gc)
    headline = ratios[f"ours/floor {GET_CHALLENGE.key}"]
    return {
        "rounds": args.rounds,
        "n": args.n,
        "n_vicc": args.n_vicc if vicc_reason is None else 0,
        "warmup_cycles_per_connect": {"floor": WARMUP, "ours": WARMUP, "vicc": WARMUP_VICC},
        "protocols": protocols,
        "card_insert_seconds_mean": {k: statistics.fmean(v) for k, v in insert_times.items() if v},
        "common_apdu": {"key": GET_CHALLENGE.key, "hex": GET_CHALLENGE.apdu.hex(" ").upper()},
        "vicc": {"measured": vicc_reason is None, "reason": vicc_reason},
        "series": results,
        "ratios": ratios,
        "target": {
            "text": f"ours within {TARGET}x of the floor (GET CHALLENGE, median)",
            "ratio": TARGET,
            "value": headline["median"],
            "met": headline["median"] <= TARGET,
        },
    }


def _ratio(a: dict[str, object], b: dict[str, object]) -> dict[str, float]:
    return {
        "median": float(a["median_ms"]) / float(b["median_ms"]),  # type: ignore[arg-type]
        "mean": float(a["mean_ms"]) / float(b["mean_ms"]),
    }  # type: ignore[arg-type]


def _pcscd_version() -> str:
    try:
        out = subprocess.run(
            ["pcscd", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("pcsc-lite version ").rstrip(".") or "unknown"


# --- output ---------------------------------------------------------------------------


def print_header(res: dict[str, object]) -> None:
    owner = "started by this run" if res["pcscd_started_by_bench"] else "already running"
    print(f"PC/SC: {res['stack']}")
    print(
        f"pcscd {res['pcscd_version']} ({owner}), {res['reader']} on port {res['vpcd_port']}, "
        f"Python {res['python']}"
    )
    print()


def print_payment(res: dict[str, object]) -> None:
    pay = res["payment"]
    assert isinstance(pay, dict)
    cards, kinds, target = pay["cards"], pay["apdu_kinds"], pay["target"]
    names = ("floor", "floor+disk", "ours")
    ours = cards["ours"]
    print(f"A payment's card work on {pay['profile']}: read_info(MasterKeySource), then VERIFY")
    print(
        f"{pay['apdus_per_payment']} APDUs a payment, the floors get the same bytes; "
        f"floor+disk also makes our card's {pay['durable_writes_per_payment']} durable writes"
    )
    print(
        f"{ours['payments']} payments a card, {len(ours['visit_medians_ms'])} interleaved "
        f"rounds (+{WARMUP_PAYMENTS} warm-up payments a connect); a warm reset before each, "
        "not timed"
    )
    print()
    header = (
        f"{'card':<10} {'payments':>8} {'mean ms':>9} {'median ms':>10} {'p90 ms':>9} "
        f"{'min ms':>8}  {'rounds: medians':>15}  {'reset ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        c = cards[name]
        visits = c["visit_medians_ms"]
        spread = f"{min(visits):.2f}-{max(visits):.2f}"
        print(
            f"{name:<10} {c['payments']:>8} {c['mean_ms']:>9.3f} {c['median_ms']:>10.3f} "
            f"{c['p90_ms']:>9.3f} {c['min_ms']:>8.3f}  {spread:>15}  {c['reset_median_ms']:>8.3f}"
        )
    print()

    def row(label: str, n: object, values: list[float | None]) -> None:
        cells = " ".join(f"{v:>10.3f}" if v is not None else " " * 10 for v in values)
        print(f"{label:<34} {n!s:>3} {cells}".rstrip())

    header = f"{'where a payment goes (median ms)':<34} {'n':>3} " + " ".join(
        f"{name:>10}" for name in names
    )
    print(header)
    print("-" * len(header))
    for kind, n in kinds.items():
        row(kind, n, [cards[name]["by_kind_median_ms"][kind] for name in names])
    row(
        "all APDU round trips",
        pay["apdus_per_payment"],
        [cards[x]["apdus_median_ms"] for x in names],
    )
    row("host, between the APDUs", "", [cards[x]["host_median_ms"] for x in names])
    row("  of which the key source's crypto", "", [None, None, ours["crypto_median_ms"]])
    row("  of which peek_atr (to pcscd)", "", [None, None, ours["peek_atr_median_ms"]])
    row("CPU: the card process (mean)", "", [cards[x]["card_cpu_ms_per_payment"] for x in names])
    print()
    for name, r in pay["ratios"].items():
        print(f"{name:<18} {r['median']:>6.2f}x median {r['mean']:>6.2f}x mean")
    print(
        f"target: {target['text']}: {target['value']:.2f}x -> "
        f"{'met' if target['met'] else 'NOT met'}"
    )


def print_table(res: dict[str, object]) -> None:
    series = res["series"]
    ratios = res["ratios"]
    target = res["target"]
    vicc = res["vicc"]
    assert isinstance(series, list) and isinstance(ratios, dict)
    assert isinstance(target, dict) and isinstance(vicc, dict)
    common = res["common_apdu"]
    assert isinstance(common, dict)
    protocols = res["protocols"]
    assert isinstance(protocols, dict)
    print(
        "APDU round trip; protocols: "
        + ", ".join(f"{card} {proto}" for card, proto in protocols.items())
    )
    print(
        f"{res['rounds']} interleaved rounds; each card in slot 0 once a round "
        f"(+{WARMUP} warm-up cycles a connect, {WARMUP_VICC} for vicc)"
    )
    print(f"APDU all three answer: GET CHALLENGE {common['hex']}")
    print()
    header = (
        f"{'card':<6} {'APDU':<18} {'bytes':<22} {'n':>5} {'mean ms':>9} "
        f"{'median ms':>10} {'p90 ms':>9}  {'rounds: medians':>17}"
    )
    print(header)
    print("-" * len(header))
    keys = [c.key for c in OURS_COMMANDS]
    order = {"floor": 0, "ours": 1, "vicc": 2}
    for s in sorted(series, key=lambda s: (keys.index(s["apdu"]), order[s["card"]])):
        hexs = s["apdu_hex"]
        hexs = hexs if len(hexs) <= 22 else hexs[:18] + " ..."
        visits = s["visit_medians_ms"]
        spread = f"{min(visits):.3f}-{max(visits):.3f}"
        print(
            f"{s['card']:<6} {s['label']:<18} {hexs:<22} {s['n']:>5} {s['mean_ms']:>9.3f} "
            f"{s['median_ms']:>10.3f} {s['p90_ms']:>9.3f}  {spread:>17}"
        )
    print()
    for name, r in ratios.items():
        print(f"{name:<32} {r['median']:>8.2f}x median {r['mean']:>8.2f}x mean")
    if not vicc["measured"]:
        print(f"vicc not measured: {vicc['reason']}")
    print()
    print(
        f"target: {target['text']}: {target['value']:.2f}x -> "
        f"{'met' if target['met'] else 'NOT met'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n",
        type=int,
        default=2000,
        help="timed APDUs per APDU kind for ours and the floor (default 2000)",
    )
    parser.add_argument(
        "--n-vicc",
        type=int,
        default=100,
        help="timed APDUs for vicc, ~44 ms each (default 100; 0 skips it)",
    )
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds (default 20)")
    parser.add_argument(
        "--payments",
        type=int,
        default=200,
        help="timed payments per card (ours, floor, floor+disk), after the APDUs "
        "(default 200; 0 skips them)",
    )
    parser.add_argument(
        "--payment-rounds",
        type=int,
        default=10,
        help="interleaved rounds of the payments (default 10)",
    )
    parser.add_argument(
        "--payment",
        action="store_true",
        help="measure only the payments (not the single APDUs, nor vicc)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="where the work folder (the card files) goes; default: the temp folder. "
        "A tmpfs such as /dev/shm takes the disk out of the card's durable writes",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the work folder (logs, card file) and print its path",
    )
    parser.add_argument(
        "--floor-card", nargs=2, metavar=("HOST:PORT", "ATR"), help=argparse.SUPPRESS
    )
    parser.add_argument("--floor-writes", nargs=2, metavar=("PATH", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_card:
        address, atr = args.floor_card
        host, _, port = address.rpartition(":")
        writes = None
        if args.floor_writes:
            writes = (Path(args.floor_writes[0]), int(args.floor_writes[1]))
        return floor_card(host, int(port), bytes.fromhex(atr), writes)
    if args.rounds < 1 or args.n < args.rounds or args.n_vicc < 0:
        parser.error("need --rounds >= 1, --n >= --rounds, --n-vicc >= 0")
    if args.payments < 0 or (args.payments and not 1 <= args.payment_rounds <= args.payments):
        parser.error("need --payments >= 0, and 1 <= --payment-rounds <= --payments")
    if args.payment and args.payments == 0:
        parser.error("--payment measures the payments only: give --payments > 0")
    reason = stack.missing()
    if reason:
        print(f"bench_pcsc: the PC/SC stack cannot run here: {reason}", file=sys.stderr)
        return 1
    # SIGTERM unwinds like Ctrl-C, so every process started here is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workdir = Path(tempfile.mkdtemp(prefix="bench-pcsc-", dir=args.dir))
    ok = False
    try:
        with machine_lock():
            results = measure(args, workdir)
        ok = True
    except (RuntimeError, TimeoutError, CardUnavailable) as e:
        print(f"bench_pcsc: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep or not ok:
            print(f"bench_pcsc: logs kept in {workdir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_header(results)
        if "series" in results:
            print_table(results)
        if "payment" in results:
            if "series" in results:
                print()
            print_payment(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

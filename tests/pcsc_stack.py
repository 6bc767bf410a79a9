"""The real PC/SC stack for tests: pcscd with the vsmartcard vpcd driver, and served cards.

Debian's pcscd ignores PCSCLITE_CSOCK_NAME: one daemon per machine, on
/run/pcscd/pcscd.comm. When none runs, the suite starts its own (`pcscd -f -c DIR`, a
reader.conf naming vpcd on ports it picks) and stops it after. vpcd opens its
port for slot 0 and the next one for slot 1, and no more: Debian builds it with two slots,
and a second reader.conf entry does not add any (the driver keeps one table of slots for
all its readers: measured, the second entry's ports replace the first's). The two ports
after the pair are picked free too: a test puts a fake vpcd there for a third card.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
DEBIAN_VPCD_PORT = 35963
READER_NAME = "Virtual PCD"  # vpcd names its slots "<FRIENDLYNAME> 00 00" and "... 00 01"
SLOTS_PER_READER = 2  # Debian's vpcd build: VPCDSLOTS
SPARE_PORTS = 2  # free ports after the pair: slots 2 and 3 of `cardio serve A B C D`
WAIT = 15.0


def missing() -> str | None:
    """Why the stack cannot run here, or None."""
    try:
        import smartcard.scard  # noqa: F401
    except ImportError:
        return "pyscard is not installed (needs libpcsclite-dev; 'make test' installs it as root)"
    if shutil.which("pcscd") is None:
        return "pcscd is not installed (Debian package pcscd)"
    if not VPCD_DRIVER.exists():
        return "the vpcd driver is not installed (Debian package vsmartcard-vpcd)"
    return None


def unavailable(reason: str) -> None:
    """Skip the test, except under CI=true, where a missing PC/SC stack is a failure."""
    if IN_CI:
        pytest.fail(f"PC/SC stack required under CI=true: {reason}", pytrace=False)
    pytest.skip(f"PC/SC stack not available: {reason}")


def slot_name(slot: int) -> str:
    return f"{READER_NAME} 00 {slot:02d}"


def _port_pair_free(port: int, count: int = SLOTS_PER_READER + SPARE_PORTS) -> bool:
    for p in range(port, port + count):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", p))
            except OSError:
                return False
    return True


def pick_port_pair(start: int = 36200) -> int:
    step = SLOTS_PER_READER + SPARE_PORTS
    for port in range(start, start + 400, step):
        if _port_pair_free(port):
            return port
    raise RuntimeError(f"no {step} free TCP ports in a row for vpcd")


def _readers() -> list[str] | None:
    """Reader names, or None when pcscd does not answer."""
    from smartcard import scard

    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != 0:
        return None
    try:
        hr, names = scard.SCardListReaders(ctx, [])
        return list(names) if hr == 0 else []
    finally:
        scard.SCardReleaseContext(ctx)


def card_present(reader: str) -> bool:
    from smartcard import scard

    hr, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hr != 0:
        return False
    try:
        hr, states = scard.SCardGetStatusChange(ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        return hr == 0 and bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(ctx)


def wait_for(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class _Serving:
    """What a `cardio serve` process a test started offers: its log, a stop."""

    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@dataclass
class ServedCard(_Serving):
    """A `cardio serve` process plugging one card file into a vpcd slot."""

    path: Path
    reader: str
    proc: subprocess.Popen
    log: Path

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class ServedSet(_Serving):
    """A `cardio serve A B ...` process: card i in slot i, and its control socket."""

    paths: list[Path]
    readers: list[str]
    proc: subprocess.Popen
    log: Path
    control: Path

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`cardio ctl --control SOCKET ARGS...`, its output captured."""
        return subprocess.run(
            [sys.executable, "-m", "cardio.cli", "ctl", "--control", str(self.control), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


MACHINE_LOCK = Path("/tmp/shebao-pos-pcsc.lock")


@dataclass
class PcscStack:
    workdir: Path
    port: int = 0
    owned: bool = False
    proc: subprocess.Popen | None = None
    served: list[ServedCard] = field(default_factory=list)
    _lock_fd: int | None = None
    _serial: int = 0  # names the serve logs: never the log of an earlier card

    # --- pcscd --------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._lock_fd is not None

    def start(self) -> float:
        """Take the machine's one pcscd for this run (other runs wait: there is one daemon);
        the seconds spent waiting for another run to let it go."""
        self._lock_fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
        waited = time.monotonic()
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        waited = time.monotonic() - waited
        readers = _readers() if PCSCD_SOCKET.exists() else None
        if readers is not None:
            # Someone else's pcscd: usable only if it has vpcd on Debian's default port.
            if slot_name(0) not in readers:
                raise RuntimeError(
                    f"a pcscd runs here without vpcd readers ({readers}); stop it "
                    "(pcscd.socket too) or add /etc/reader.conf.d/vpcd, then rerun"
                )
            self.port = int(os.environ.get("SHEBAO_VPCD_PORT", DEBIAN_VPCD_PORT))
            return waited
        self.port = pick_port_pair()
        self.owned = True
        self._launch()
        return waited

    def _launch(self) -> None:
        conf = self.workdir / "reader.conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "vpcd").write_text(
            f'FRIENDLYNAME "{READER_NAME}"\n'
            f"DEVICENAME   /dev/null:{self.port}\n"
            f"LIBPATH      {VPCD_DRIVER}\n"
            f"CHANNELID    {self.port}\n"
        )
        log = open(self.workdir / "pcscd.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            ["pcscd", "--foreground", "--info", "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(lambda: (_readers() or []).count(slot_name(0)) == 1, "pcscd and vpcd")

    def stop_pcscd(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart_pcscd(self) -> None:
        if not self.owned:
            raise RuntimeError("this pcscd is not the suite's own; it cannot be restarted")
        self.stop_pcscd()
        wait_for(lambda: not PCSCD_SOCKET.exists(), "the old pcscd socket to go")
        self._launch()

    def close(self) -> None:
        """Stop what was started and let the next run have pcscd; start() may follow."""
        for served in self.served:
            with contextlib.suppress(Exception):
                served.stop()
        self.served.clear()
        if self.owned:
            self.stop_pcscd()
            self.owned = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- served cards ---------------------------------------------------------------

    def serve(self, path: Path, slot: int = 0, *extra: str, wait: bool = True) -> ServedCard:
        reader = slot_name(slot)
        self._serial += 1
        log = self.workdir / f"serve-{path.stem}-{self._serial}.log"
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cardio.cli",
                "serve",
                str(path),
                "--vpcd",
                f"127.0.0.1:{self.port + slot}",
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        served = ServedCard(Path(path), reader, proc, log)
        self.served.append(served)
        if wait:
            try:
                wait_for(lambda: card_present(reader), f"the card in {reader}")
            except TimeoutError:
                served.stop()
                raise TimeoutError(
                    f"card not seen in {reader}; serve log:\n{served.output()}"
                ) from None
        return served

    def serve_set(self, paths: list[Path], *extra: str, wait: bool = True) -> ServedSet:
        """Several cards in one `cardio serve`, slot 0 on, with a control socket here
        (a short path: a socket's may have 107 bytes at most). Slots past vpcd's two are
        on ports PORT+2 on, where nothing listens unless the test puts a fake vpcd there;
        only the cards of pcscd's slots are waited for."""
        self._serial += 1
        log = self.workdir / f"serve-set-{self._serial}.log"
        control = self.workdir / f"ctl-{self._serial}.sock"
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cardio.cli",
                "serve",
                *map(str, paths),
                "--vpcd",
                f"127.0.0.1:{self.port}",
                "--control",
                str(control),
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        readers = [slot_name(i) for i in range(min(len(paths), SLOTS_PER_READER))]
        served = ServedSet(list(paths), readers, proc, log, control)
        self.served.append(served)  # type: ignore[arg-type]  # stop() is all close() uses
        if wait:
            try:
                for reader in readers:
                    wait_for(lambda r=reader: card_present(r), f"the card in {reader}")
                wait_for(control.exists, "the control socket")
            except TimeoutError:
                served.stop()
                raise TimeoutError(f"cards not seen; serve log:\n{served.output()}") from None
        return served

    @contextlib.contextmanager
    def serving_sets(self) -> Iterator[Callable[..., ServedSet]]:
        """serve_set for one test: what it started is stopped, and its slots seen empty,
        before the next test serves its own."""
        started: list[ServedSet] = []

        def start(paths: list[Path], *extra: str, wait: bool = True) -> ServedSet:
            served = self.serve_set(paths, *extra, wait=wait)
            started.append(served)
            return served

        try:
            yield start
        finally:
            for served in started:
                with contextlib.suppress(Exception):
                    served.stop()
                for reader in served.readers:
                    self.wait_removed(reader)

    def wait_removed(self, reader: str) -> None:
        wait_for(lambda: not card_present(reader), f"{reader} to be empty")

"""DES cards end to end (the FCI's algorithm 01; part 4's 8-byte-block rules, two-key 3DES
keys dispersed per part 9 §7.1.1): `cardio card new --algorithm des`, a DES PSAM, the
terminal's check and a payment, the outlet's reload; an SM4 PSAM cannot check a DES card
and says so (docs/security.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from terminal_helpers import ENABLED_PIN, enter, make_app, screen_text, start_payment

from cardio import cli, security
from cardio.card import profiles, store
from cardio.issuer import KeyName, fixture_issuer
from cardio.keysource import PsamKeySource
from cardio.model import Algorithm
from cardio.outlet import Operation, Outlet, OutletLog, fixture_master_key
from cardio.protocol import SocialSecurityCard
from cardio.psam import state as psam_state
from cardio.psam import store as psam_store
from cardio.readers.virtual import VirtualReader
from terminal.strings import ZH

SIZE = (80, 24)


def des_card(tmp_path: Path, profile: str = "employee-enabled") -> Path:
    path = tmp_path / "des.json"
    assert cli.main(["card", "new", "--profile", profile, "--algorithm", "des", str(path)]) == 0
    return path


def psam(tmp_path: Path, algorithm: Algorithm) -> PsamKeySource:
    path = tmp_path / f"psam-{algorithm.name}.json"
    psam_store.create(path, psam_state.make(fixture_issuer(algorithm)))
    reader = VirtualReader(path, shared_psam=True)
    reader.connect()
    return PsamKeySource(reader)


def test_a_des_card_says_01_and_holds_3des_keys(tmp_path: Path) -> None:
    state = store.read(des_card(tmp_path))
    assert state.algorithm is Algorithm.DES
    master = fixture_issuer(Algorithm.DES).masters[KeyName.IRK]
    assert len(master) == 16  # double length: two-key 3DES (part 9 §7.1.1 fig. 3)
    ident, historical = state.card.identification_code, state.historical
    expected = security.card_key(Algorithm.DES, master, ident, historical)
    assert state.keys[KeyName.IRK] == expected


def test_a_des_psam_and_the_masters_check_a_des_card_alike(tmp_path: Path) -> None:
    path = des_card(tmp_path)
    for keys in (psam(tmp_path, Algorithm.DES), fixture_master_key()):
        reader = VirtualReader(path)
        reader.connect()
        info = SocialSecurityCard(reader).read_info(keys)
        reader.close()
        assert info.scheme == "310"  # DF04 read after RK1DF04 under DES
        assert info.ssn == store.read(path).holder.ssn


def test_a_des_card_pays_at_the_terminal_with_a_des_psam(tmp_path: Path) -> None:
    path = des_card(tmp_path)
    app = make_app(path, keys=psam(tmp_path, Algorithm.DES))

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await start_payment(pilot)
            await enter(pilot, ENABLED_PIN)
            assert ZH["authorised"] in screen_text(app)

    asyncio.run(run())


def test_an_sm4_psam_cannot_check_a_des_card_and_says_so(tmp_path: Path) -> None:
    path = des_card(tmp_path)
    before = path.read_bytes()
    app = make_app(path, keys=psam(tmp_path, Algorithm.SM4))

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await start_payment(pilot)
            text = screen_text(app)
            assert ZH["psam_failed"] in text, text
            assert ZH["enter_pin"] not in text

    asyncio.run(run())
    assert path.read_bytes() == before


def test_the_outlet_reloads_a_des_card(tmp_path: Path) -> None:
    path = des_card(tmp_path, "locked")
    state = store.read(path)
    reader = VirtualReader(path)
    try:
        desk = Outlet(reader, fixture_master_key(), operator="t", log=OutletLog(tmp_path / "o"))
        assert desk.run(Operation.RESET_PIN, state.holder.ssn, "384950").ok
    finally:
        reader.close()
    after = store.read(path)
    assert after.tries_left == after.try_limit and after.pin.matches("384950")


def test_the_counterfeit_profile_is_sm4_only(tmp_path: Path, capsys) -> None:
    argv = ["card", "new", "--profile", "counterfeit", "--algorithm", "des"]
    assert cli.main([*argv, str(tmp_path / "x.json")]) == 2
    assert "counterfeit profile is an SM4 card" in capsys.readouterr().err
    assert profiles.make("counterfeit").algorithm is Algorithm.SM4


def test_an_older_des_card_file_gets_the_des_test_issuers_keys(tmp_path: Path) -> None:
    """A format-2 file (before each card held its keys) of a DES card loads with keys
    of the DES test issuer, not of the SM4 one."""
    import json

    path = des_card(tmp_path)
    doc = json.loads(path.read_text("utf-8"))
    doc["version"] = 2
    del doc["key_tries"], doc["application_blocked"], doc["secrets"]["keys"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    assert store.read(old).keys == store.read(path).keys

"""One receipt, two renderings: the result screen's lines and the --receipts file."""

from __future__ import annotations

from host.client import Settlement
from terminal.flow.receipt import Receipt
from terminal.strings import text

SETTLEMENT = Settlement(
    msgid="H31010100001202406011030000001",
    setl_id="S20240601103000123456789012345",
    mdtrt_id="M20240601103000123456789012345",
    psn_no="P310101197911020480",
    time="2024-06-01 10:30:00",
    medfee_fen=1250,
    fund_fen=300,
    acct_fen=900,
    cash_fen=50,
    balance_after_fen=126800,
)


def shown(receipt: Receipt, lang: str) -> list[str]:
    return [text(lang, ln.key, **dict(ln.params)) for ln in receipt.lines()]


def test_screen_and_file_carry_the_same_facts_masked() -> None:
    receipt = Receipt.of("POS-0001", SETTLEMENT, "A93456742", "张三丰")
    screen = "\n".join(shown(receipt, "zh"))
    file = receipt.text()
    facts = ("POS-0001", "A93***742", "张**", "12.50", "3.00", "9.00", "0.50", "1268.00")
    for fact in (*facts, SETTLEMENT.setl_id, "2024-06-01 10:30:00"):
        assert fact in screen, fact
        assert fact in file, fact
    for hidden in ("A93456742", "张三丰", SETTLEMENT.psn_no):
        assert hidden not in screen and hidden not in file
    assert receipt.file_name() == "receipt-2024-06-01T103000-89012345.txt"


def test_a_card_without_number_or_name_shows_dashes() -> None:
    receipt = Receipt.of("POS-0001", SETTLEMENT, None, None)
    assert (receipt.card, receipt.name) == ("-", "-")
    assert "卡号 Card          -" in receipt.text()

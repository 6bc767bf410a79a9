"""Reader errors: typed, each with one sentence a person can act on."""

from __future__ import annotations

from cardio.api_codes import ApiCode
from cardio.errors import CardioError


class ReaderError(CardioError):
    """Base class of the reader's errors; str(e) is the sentence to show."""

    default = "the card reader failed; try again"
    api_code: int | None = ApiCode.READER_CONNECTION  # -11 unless a subclass says better


class NoServiceError(ReaderError):
    default = "the PC/SC service is not running; start pcscd (sudo systemctl start pcscd)"


class NoReaderError(ReaderError):
    default = "no card reader found; plug in a reader or start 'cardio serve' for a virtual card"


class NoCardError(ReaderError):
    default = "no card in the reader; insert the card"
    api_code = ApiCode.NO_CARD


class CardNotPoweredError(NoCardError):
    """A card in the slot that was not powered up (the reader API's -3)."""

    default = "the card is not powered; connect first"
    api_code = ApiCode.NOT_POWERED


class UnresponsiveCardError(NoCardError):
    """A card that gives no ATR (the reader API's -4)."""

    default = "the card does not answer; take it out and insert it the right way up"
    api_code = ApiCode.NO_RESPONSE


class CardRemovedError(ReaderError):
    default = "the card was removed during the command; insert it again and retry"
    api_code = ApiCode.NO_CARD


class ReaderGoneError(ReaderError):
    default = "the card reader was unplugged; plug it in again"


class SharingViolationError(ReaderError):
    default = "another program is using the card; close it and retry"


class ProtocolError(ReaderError):
    default = "the card kept answering 61xx/6Cxx without end; remove the card and try again"
    api_code = None  # no number in the reader API: its "unknown error"


class NoResponseError(ReaderError):
    """The card took the command and gave no answer in time (the reader API's -4)."""

    default = "the card does not respond; remove it and try again"
    api_code = ApiCode.NO_RESPONSE


class ReaderBusyError(ReaderError):
    """An earlier command that never answered still holds the reader."""

    default = "the card reader is still busy with an earlier command; wait a moment and retry"

"""Link model: how long a real PN532 rig would take, as plain arithmetic (no sleeping, no clock).

The same numbers pace the simulated link (the caller sleeps) and give benchmarks their physical lower
bound, so every function states its formula. The links modelled:

* the host UART, 8N1 (10 bits per byte), at a SetSerialBaudRate speed, or the host's I2C bus (9 clocks a byte)
  or SPI bus (8 clocks a byte) at its clock;
* the 13.56 MHz air interface, ISO/IEC 14443 type A at 106 kbit/s: one bit = 128 carrier cycles.

It is a model. Frame delay times use the ISO/IEC 14443-3 minimums; waiting-time extensions,
retransmissions, the chip's own firmware latency and the card's real processing time are left out
(the last is a separate, configurable estimate: :class:`CardTiming`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from emvcore import tlv
from emvcore.qpboc import Cryptogram, Iad

CARRIER_HZ = 13.56e6
"""fc, the RF carrier frequency."""

BAUD_RATES = {0: 9600, 1: 19200, 2: 38400, 3: 57600, 4: 115200, 5: 230400, 6: 460800, 7: 921600, 8: 1288000}
"""SetSerialBaudRate (0x10) codes → bits per second."""

DEFAULT_BAUD = 115200
UART_BITS_PER_BYTE = 10  # 8N1: start bit + 8 data bits + stop bit
ACK_BYTES = 6  # 00 00 FF 00 FF 00

AIR_BIT_CYCLES = 128
AIR_BIT_SECONDS = AIR_BIT_CYCLES / CARRIER_HZ
"""One bit at 106 kbit/s: 128/fc ≈ 9.44 µs."""

FDT_PICC_CYCLES = 1236
FDT_PICC_SECONDS = FDT_PICC_CYCLES / CARRIER_HZ
"""PCD frame end → PICC answer: (n·128 + 84)/fc with n = 9 when the last bit is 1, ≈ 91.2 µs.

ISO/IEC 14443-3 §6.2.1.1. n = 9 is fixed for REQA/WUPA/ANTICOLLISION/SELECT; later commands may
take any n ≥ 9, so this is the minimum. The last-bit-0 value (n·128 + 20)/fc is 4.7 µs shorter; the
model uses 1236/fc throughout.
"""

FDT_PCD_CYCLES = 1172
FDT_PCD_SECONDS = FDT_PCD_CYCLES / CARRIER_HZ
"""PICC frame end → next PCD frame: at least 1172/fc ≈ 86.4 µs (ISO/IEC 14443-3 §6.2.1.2), used as is."""

_ISODEP_OVERHEAD = 3  # PCB + CRC_A (2); no CID, no NAD
_MIN_FRAME_SIZE = 16  # FSCI/FSDI 0
_LEVELS_BY_UID_LENGTH = {4: 1, 7: 2, 10: 3}


def _check_count(name: str, value: int) -> None:
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


# --- the host UART ---------------------------------------------------------------------------------


def uart_seconds(nbytes: int, baud: int) -> float:
    """Wire time of ``nbytes`` at 8N1: ``nbytes · 10 / baud``."""
    _check_count("nbytes", nbytes)
    if baud <= 0:
        raise ValueError(f"baud must be positive, got {baud}")
    return nbytes * UART_BITS_PER_BYTE / baud


def pn532_frame_bytes(payload_len: int) -> int:
    """Bytes on the wire for a frame with ``payload_len`` bytes after TFI, as :func:`encode_frame` sends it.

    Normal (LEN = payload + 1 ≤ 255): ``payload + 8`` = preamble, 00 FF, LEN, LCS, TFI, DCS, postamble.
    Extended: ``payload + 11`` (FF FF, LENM and LENL replace LEN).
    """
    _check_count("payload_len", payload_len)
    if payload_len > 264:
        raise ValueError(f"payload of {payload_len} bytes exceeds the PN532 limit of 264")
    return payload_len + (8 if payload_len + 1 <= 0xFF else 11)


def uart_exchange_seconds(command_payload: int, response_payload: int, baud: int, *, wakeup_bytes: int = 4) -> float:
    """One command/response dialog on the UART, at least what the host waits for.

    ``uart_seconds(wakeup + frame(command) + 6 (ACK) + frame(response), baud)``; ``wakeup_bytes`` = 4 for
    pn532pi's ``55 00 00 55`` before every frame, 0 for nfcpy. The optional host ACK after the response
    is not counted.
    """
    _check_count("wakeup_bytes", wakeup_bytes)
    total = wakeup_bytes + pn532_frame_bytes(command_payload) + ACK_BYTES + pn532_frame_bytes(response_payload)
    return uart_seconds(total, baud)


# --- the host buses: I2C and SPI ---------------------------------------------------------------------

I2C_CLOCKS_PER_BYTE = 9  # 8 data bits + the ACK bit
I2C_FRAMING_CLOCKS = 2  # START and STOP (a repeated START costs the same)
SPI_CLOCKS_PER_BYTE = 8


def i2c_seconds(nbytes: int, clock_hz: int) -> float:
    """One I2C transaction of ``nbytes`` data bytes: ``((nbytes + 1 address byte) · 9 + 2) / clock``."""
    _check_count("nbytes", nbytes)
    if clock_hz <= 0:
        raise ValueError(f"clock_hz must be positive, got {clock_hz}")
    return ((nbytes + 1) * I2C_CLOCKS_PER_BYTE + I2C_FRAMING_CLOCKS) / clock_hz


def spi_seconds(nbytes: int, clock_hz: int) -> float:
    """One SPI transfer (chip select low for ``nbytes``): ``nbytes · 8 / clock``."""
    _check_count("nbytes", nbytes)
    if clock_hz <= 0:
        raise ValueError(f"clock_hz must be positive, got {clock_hz}")
    return nbytes * SPI_CLOCKS_PER_BYTE / clock_hz


# --- the air interface (ISO/IEC 14443-3 type A, 106 kbit/s) ------------------------------------------


def _frame_cycles(nbytes: int, *, crc: bool = True) -> int:
    """Carrier cycles of a standard frame; the air model adds whole cycles so sums stay exact."""
    _check_count("nbytes", nbytes)
    data_bytes = nbytes + (2 if crc else 0)
    return (1 + 9 * data_bytes + 1) * AIR_BIT_CYCLES


def _seconds(cycles: int) -> float:
    return cycles / CARRIER_HZ


def air_frame_seconds(nbytes: int, *, crc: bool = True) -> float:
    """A standard frame (ISO/IEC 14443-3 §6.2.3.2): ``(1 + 9 · (nbytes + 2·crc) + 1) · 128/fc``.

    Start bit, 8 data bits + odd parity per byte, end of communication; ``crc`` adds the 2 CRC_A bytes.
    """
    return _seconds(_frame_cycles(nbytes, crc=crc))


def short_frame_seconds() -> float:
    """REQA/WUPA as a short frame (§6.2.3.1): ``(1 + 7 + 1) · 128/fc``."""
    return _seconds((1 + 7 + 1) * AIR_BIT_CYCLES)


def _exchange_cycles(command: int, answer: int) -> int:
    """Command, the PICC's frame delay, the answer, then the PCD's delay before it may send again."""
    return command + FDT_PICC_CYCLES + answer + FDT_PCD_CYCLES


def activation_seconds(uid_length: int, *, with_rats: bool, ats_length: int = 5, sfgi: int = 0) -> float:
    """Air time to wake and select one type A card, without collisions; each step is
    ``command + FDT_PICC + answer + FDT_PCD``:

    * WUPA (short frame) → ATQA (2 bytes, no CRC);
    * per cascade level (1, 2, 3 for a 4-, 7-, 10-byte UID): ANTICOLLISION ``93 20`` → UID CLn + BCC
      (5 bytes, no CRC); SELECT ``93 70`` + UID CLn + BCC (7 bytes + CRC) → SAK (1 byte + CRC);
    * ``with_rats``: RATS ``E0 xx`` (2 bytes + CRC) → ATS (``ats_length`` bytes incl. TL, + CRC), then
      the longer of FDT_PCD and SFGT = 4096 · 2^SFGI / fc (ISO/IEC 14443-4; SFGI 0 = no guard time).
    """
    levels = _LEVELS_BY_UID_LENGTH.get(uid_length)
    if levels is None:
        raise ValueError(f"a type A UID has 4, 7 or 10 bytes, not {uid_length}")
    if ats_length < 1:
        raise ValueError(f"an ATS has at least its TL byte, got length {ats_length}")
    if not 0 <= sfgi <= 14:
        raise ValueError(f"SFGI is 0..14, got {sfgi}")
    cycles = _exchange_cycles((1 + 7 + 1) * AIR_BIT_CYCLES, _frame_cycles(2, crc=False))
    for _ in range(levels):
        cycles += _exchange_cycles(_frame_cycles(2, crc=False), _frame_cycles(5, crc=False))
        cycles += _exchange_cycles(_frame_cycles(7), _frame_cycles(1))
    if with_rats:
        sfgt = 4096 * 2**sfgi if sfgi else 0
        cycles += _frame_cycles(2) + FDT_PICC_CYCLES + _frame_cycles(ats_length) + max(FDT_PCD_CYCLES, sfgt)
    return _seconds(cycles)


def iblock_count(inf_length: int, frame_size: int) -> int:
    """I-blocks needed for ``inf_length`` bytes when frames may be ``frame_size`` (FSC or FSD) long.

    ``max(1, ceil(inf_length / (frame_size - 3)))``: the frame size counts PCB and CRC_A, and an empty
    APDU still takes one block.
    """
    _check_count("inf_length", inf_length)
    if frame_size < _MIN_FRAME_SIZE:
        raise ValueError(f"FSC/FSD is at least {_MIN_FRAME_SIZE}, got {frame_size}")
    return max(1, math.ceil(inf_length / (frame_size - _ISODEP_OVERHEAD)))


def _block_sizes(inf_length: int, frame_size: int) -> list[int]:
    """INF bytes per I-block: full blocks, then the remainder."""
    count = iblock_count(inf_length, frame_size)
    per_block = frame_size - _ISODEP_OVERHEAD
    return [per_block] * (count - 1) + [inf_length - per_block * (count - 1)]


def isodep_exchange_seconds(apdu_len: int, response_len: int, fsc: int = 64, fsd: int = 256) -> float:
    """Air time of one APDU and its response in ISO/IEC 14443-4 I-blocks, card processing excluded.

    Each I-block is ``air_frame_seconds(1 + INF)`` (PCB + INF + CRC_A); INF ≤ FSC − 3 towards the card,
    ≤ FSD − 3 back. Every chained block but the last is acknowledged by an R(ACK) (PCB + CRC_A). Sum:
    command blocks + response blocks + R(ACK)s + FDT_PICC before each PICC frame + FDT_PCD after each
    PICC frame. WTX, CID/NAD and retransmissions are not modelled.
    """
    command = _block_sizes(apdu_len, fsc)
    response = _block_sizes(response_len, fsd)
    r_ack = _frame_cycles(1)
    cycles = 0
    for inf in command[:-1]:  # PCD chains, PICC acknowledges each block
        cycles += _exchange_cycles(_frame_cycles(1 + inf), r_ack)
    cycles += _frame_cycles(1 + command[-1]) + FDT_PICC_CYCLES
    for inf in response[:-1]:  # PICC chains, PCD acknowledges each block
        cycles += _frame_cycles(1 + inf) + FDT_PCD_CYCLES + r_ack + FDT_PICC_CYCLES
    return _seconds(cycles + _frame_cycles(1 + response[-1]) + FDT_PCD_CYCLES)


# --- the emulated card --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardTiming:
    """Modelled (not measured) processing time per command on the emulated card, in seconds.

    The defaults are order-of-magnitude guesses for a contactless smart-card chip: file lookups take
    a few ms, a 3DES/SM4 MAC for an online cryptogram tens of ms, and an RSA-1024 private-key signature
    (fDDA on an offline approval) is the slowest step. Tune them; do not quote them as measurements.
    """

    select_seconds: float = 0.002
    gpo_seconds: float = 0.030  # GPO going online: ARQC (3DES/SM4 MAC)
    gpo_offline_seconds: float = 0.080  # GPO approved offline: TC + fDDA RSA-1024 signature
    read_record_seconds: float = 0.003
    purchase_seconds: float = 0.015  # transit INITIALIZE FOR PURCHASE (50) / DEBIT FOR PURCHASE (54): MACs
    other_seconds: float = 0.002


_INS_SELECT = 0xA4
_INS_GPO = 0xA8
_INS_READ_RECORD = 0xB2
_INS_TRANSIT = frozenset({0x50, 0x54})
_SW_OK = b"\x90\x00"


def _offline_approval(response: bytes) -> bool:
    """The GPO answer is a TC, as the CVR inside its 9F10 says."""
    if len(response) < 2 or response[-2:] != _SW_OK:
        return False
    try:
        iad = tlv.find(response[:-2], 0x9F10)
        return iad is not None and Iad.decode(iad).cryptogram is Cryptogram.TC
    except ValueError:  # TLV or IAD
        return False


def card_seconds(timing: CardTiming, apdu: bytes, response: bytes, *, offline: bool | None = None) -> float:
    """The modelled processing time for one command, chosen by INS.

    GPO is online or offline by ``offline``, or when that is None, by the CVR in the response's 9F10.
    A command too short to carry an INS costs ``other_seconds``.
    """
    ins = apdu[1] if len(apdu) >= 2 else None
    if ins == _INS_SELECT:
        return timing.select_seconds
    if ins == _INS_GPO:
        if offline is None:
            offline = _offline_approval(bytes(response))
        return timing.gpo_offline_seconds if offline else timing.gpo_seconds
    if ins == _INS_READ_RECORD:
        return timing.read_record_seconds
    if ins in _INS_TRANSIT:
        return timing.purchase_seconds
    return timing.other_seconds

"""The software PN532 on I2C and SPI (firmware/simulator/bus.py) and the simulated device nodes in front of it
(firmware/simulator/devices.py): the bus framing by hand, byte for byte, then quick2wire's and spidev's own calls.
pn532pi's classes and the whole terminal over each bus are in tests/terminal/test_buses.py."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest
from quick2wire.i2c import I2CMaster, reading, writing
from waits import until

from firmware.simulator import devices
from firmware.simulator.air import Field
from firmware.simulator.bus import (
    I2C_ADDRESS,
    SPI_DATA_READ,
    SPI_DATA_WRITE,
    SPI_STATUS_READ,
    BusError,
    I2cTarget,
    SpiTarget,
    reverse_bits,
)
from firmware.simulator.chip import Pn532Chip
from firmware.simulator.frames import ACK, NACK, TFI_HOST, encode_frame
from firmware.simulator.link import i2c_seconds, spi_seconds
from firmware.simulator.timing import LinkModel

GET_FIRMWARE_VERSION = encode_frame(TFI_HOST, b"\x02")
FIRMWARE_VERSION_RESPONSE = bytes.fromhex("0000FF06FAD50332010607E800")
READY, NOT_READY = 0x01, 0x00


def _chip_on(kind: type) -> tuple[Pn532Chip, I2cTarget | SpiTarget]:
    sink: list = []
    chip = Pn532Chip("pos", Field(), lambda frame: sink[0](frame), link=LinkModel(enabled=False))
    target = kind(chip)
    sink.append(target.output)
    return chip, target


@pytest.fixture
def i2c() -> Iterator[I2cTarget]:
    chip, target = _chip_on(I2cTarget)
    yield target
    chip.close()


@pytest.fixture
def spi() -> Iterator[SpiTarget]:
    chip, target = _chip_on(SpiTarget)
    yield target
    chip.close()


def _ready(target: I2cTarget) -> bytes:
    return until(lambda: target.read(I2C_ADDRESS, 1) == bytes([READY]), 5, "the chip's answer")


# -- I2C -------------------------------------------------------------------------------------------------------


def test_i2c_status_byte_then_the_ack_then_the_response(i2c: I2cTarget) -> None:
    assert i2c.read(I2C_ADDRESS, 7) == bytes([NOT_READY]) + bytes(6)  # nothing asked yet
    i2c.write(I2C_ADDRESS, GET_FIRMWARE_VERSION)
    assert i2c.read(I2C_ADDRESS, 1) == bytes([READY])  # a status-only read takes nothing away
    assert i2c.read(I2C_ADDRESS, 7) == bytes([READY]) + ACK
    _ready(i2c)
    response = i2c.read(I2C_ADDRESS, 1 + len(FIRMWARE_VERSION_RESPONSE) + 4)
    assert response == bytes([READY]) + FIRMWARE_VERSION_RESPONSE + bytes(4)  # past the frame: zeros
    assert i2c.read(I2C_ADDRESS, 3) == bytes([NOT_READY, 0, 0])  # read once, gone


def test_i2c_pn532pis_short_read_then_nack_gets_the_whole_response(i2c: I2cTarget) -> None:
    i2c.write(I2C_ADDRESS, GET_FIRMWARE_VERSION)
    assert i2c.read(I2C_ADDRESS, 7) == bytes([READY]) + ACK
    _ready(i2c)
    assert i2c.read(I2C_ADDRESS, 6) == bytes([READY]) + FIRMWARE_VERSION_RESPONSE[:5]  # length only: consumed
    i2c.write(I2C_ADDRESS, NACK)  # "send it again"
    _ready(i2c)
    assert i2c.read(I2C_ADDRESS, 6 + 6 + 2) == bytes([READY]) + FIRMWARE_VERSION_RESPONSE


def test_i2c_another_address_is_a_remote_io_error(i2c: I2cTarget) -> None:
    for call in (lambda: i2c.write(0x48, GET_FIRMWARE_VERSION), lambda: i2c.read(0x25, 1)):
        with pytest.raises(BusError) as raised:
            call()
        assert raised.value.errno == errno.EREMOTEIO


def test_i2c_a_new_command_or_a_reset_drops_an_answer_never_read(i2c: I2cTarget) -> None:
    i2c.write(I2C_ADDRESS, GET_FIRMWARE_VERSION)
    _ready(i2c)
    i2c.write(I2C_ADDRESS, GET_FIRMWARE_VERSION)  # the host gave up on the first: only the new ACK is there
    assert i2c.read(I2C_ADDRESS, 7) == bytes([READY]) + ACK
    _ready(i2c)
    assert i2c.read(I2C_ADDRESS, 14) == bytes([READY]) + FIRMWARE_VERSION_RESPONSE
    i2c.write(I2C_ADDRESS, GET_FIRMWARE_VERSION)
    i2c.chip.reset()  # RSTPDN: what the chip held is gone
    assert i2c.read(I2C_ADDRESS, 1) == bytes([NOT_READY])


def test_i2c_time_in_the_link_model() -> None:
    assert i2c_seconds(6, 100_000) == pytest.approx((7 * 9 + 2) / 100_000)
    assert i2c_seconds(6, 400_000) == pytest.approx(i2c_seconds(6, 100_000) / 4)
    chip, target = _chip_on(I2cTarget)
    try:
        target.read(I2C_ADDRESS, 7)
        assert chip.link.hops["i2c"] == pytest.approx(i2c_seconds(7, 100_000))
        assert chip.link.hops["uart"] == 0
    finally:
        chip.close()


# -- SPI -------------------------------------------------------------------------------------------------------


def _xfer(spi: SpiTarget, plain: bytes, clock_hz: int = 1_000_000) -> bytes:
    """A transfer as the host means it (pn532pi reverses each byte for the wire and back)."""
    return reverse_bits(spi.transfer(reverse_bits(plain), clock_hz))


def test_spi_is_least_significant_bit_first_on_the_wire(spi: SpiTarget) -> None:
    assert reverse_bits(bytes([0x01, 0x80, 0xD4, 0x00, 0xFF])) == bytes([0x80, 0x01, 0x2B, 0x00, 0xFF])
    wire = spi.transfer(bytes([SPI_DATA_WRITE]) + GET_FIRMWARE_VERSION, 1_000_000)  # not reversed: no command
    assert len(wire) == 1 + len(GET_FIRMWARE_VERSION)
    assert _xfer(spi, bytes([SPI_STATUS_READ, 0]))[1] == NOT_READY


def test_spi_status_ack_and_a_response_read_in_two_parts_like_pn532pi(spi: SpiTarget) -> None:
    _xfer(spi, bytes([SPI_DATA_WRITE]) + GET_FIRMWARE_VERSION)
    assert _xfer(spi, bytes([SPI_STATUS_READ, 0]))[1] == READY
    assert _xfer(spi, bytes([SPI_DATA_READ]) + bytes(6))[1:] == ACK  # the byte under 03 means nothing
    until(lambda: _xfer(spi, bytes([SPI_STATUS_READ, 0]))[1] == READY, 5, "the response")
    head = _xfer(spi, bytes([SPI_DATA_READ]) + bytes(5))[1:]
    assert head == FIRMWARE_VERSION_RESPONSE[:5]
    length = head[3]
    rest = _xfer(spi, bytes([SPI_DATA_READ]) + bytes(length + 1))  # the next byte comes out under 03 itself
    assert head + rest == FIRMWARE_VERSION_RESPONSE
    assert _xfer(spi, bytes([SPI_STATUS_READ, 0]))[1] == NOT_READY


def test_spi_time_in_the_link_model(spi: SpiTarget) -> None:
    spi.transfer(bytes(10), 4_000_000)
    assert spi.chip.link.hops["spi"] == pytest.approx(spi_seconds(10, 4_000_000)) == pytest.approx(20e-6)


# -- the device nodes ----------------------------------------------------------------------------------------


@pytest.fixture
def node() -> Iterator[tuple[str, I2cTarget]]:
    chip, target = _chip_on(I2cTarget)
    path = devices.i2c_node(7)
    devices.attach(path, target)
    yield path, target
    devices.detach(path)
    chip.close()


def test_quick2wire_unchanged_on_a_simulated_node(node: tuple[str, I2cTarget]) -> None:
    with I2CMaster(7) as bus:
        bus.transaction(writing(I2C_ADDRESS, GET_FIRMWARE_VERSION))
        assert bus.transaction(reading(I2C_ADDRESS, 7)) == [bytes([READY]) + ACK]
        until(lambda: bus.transaction(reading(I2C_ADDRESS, 1)) == [bytes([READY])], 5, "the response")
        first, second = bus.transaction(reading(I2C_ADDRESS, 6), writing(I2C_ADDRESS, NACK),
                                        reading(I2C_ADDRESS, 1))  # three messages in one transaction
        assert first == bytes([READY]) + FIRMWARE_VERSION_RESPONSE[:5] and second == bytes([READY])  # sent again


def test_the_i2c_dev_rules_and_errors(node: tuple[str, I2cTarget]) -> None:
    with I2CMaster(7) as bus:
        with pytest.raises(OSError) as raised:
            bus.transaction(*[reading(I2C_ADDRESS, 1)] * 43)  # more messages than i2c-dev takes
        assert raised.value.errno == errno.EINVAL
        with pytest.raises(OSError) as raised:
            bus.transaction(reading(0x30, 1))
        assert raised.value.errno == errno.EREMOTEIO
        with pytest.raises(ValueError, match="already simulated"):
            devices.attach(node[0], node[1])
        devices.detach(node[0])  # the adapter goes away under an open descriptor
        with pytest.raises(OSError):
            bus.transaction(reading(I2C_ADDRESS, 1))


def test_nodes_not_simulated_are_the_real_ones() -> None:
    devices.install()
    with pytest.raises(FileNotFoundError):
        I2CMaster(999)  # no machine has /dev/i2c-999: the real open's error
    import spidev

    assert spidev.SpiDev is devices.SpiDev
    with pytest.raises(FileNotFoundError):
        spidev.SpiDev().open(999, 1)

"""The contactless reader layer: the `Reader` interface, its PN532 and PC/SC backends (`choose.make_reader`)."""

from terminal.reader.base import CardRemoved, Reader, ReaderError, Target

__all__ = ["CardRemoved", "Reader", "ReaderError", "Target"]

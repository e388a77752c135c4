"""The contactless reader layer: the `Reader` interface and its PN532 backend."""

from terminal.reader.base import CardRemoved, Reader, ReaderError, Target

__all__ = ["CardRemoved", "Reader", "ReaderError", "Target"]

"""The terminal's contactless kernels: qPBOC purchases (``qpboc.run``), transit fares (``transit.fare``) and
transit top-ups (``transit_load.load``).

Pure logic: the card is reached only through a ``transceive(apdu) -> bytes`` callable that the reader
provides, so the kernels run the same against a software card, the software PN532 or a real reader.
"""

from terminal.kernel.errors import CardGone
from terminal.kernel.outcome import Message, Outcome
from terminal.kernel.params import KernelParams
from terminal.kernel.qpboc import KernelResult, run
from terminal.kernel.transit import Psam, TransitResult, fare

__all__ = [
    "CardGone", "KernelParams", "KernelResult", "Message", "Outcome", "Psam", "TransitResult", "fare", "run",
]

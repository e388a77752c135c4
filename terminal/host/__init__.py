"""The terminal's link to the acquirer: signed HTTP client (`client`) and the journaled conversation (`link`)."""

from terminal.host.client import HostClient, HostError, HostRejected, HostTimeout, HostUnavailable
from terminal.host.link import AdviceReceipt, FlushResult, HostAnswer, HostLink, LinkStatus, SettlementResult

__all__ = [
    "AdviceReceipt",
    "FlushResult",
    "HostAnswer",
    "HostClient",
    "HostError",
    "HostLink",
    "HostRejected",
    "HostTimeout",
    "HostUnavailable",
    "LinkStatus",
    "SettlementResult",
]

"""`pos-terminal run`: the terminal as a service (sale loop, virtual-ECR poller, local ECR endpoint, sd_notify)."""

from terminal.service.service import ServiceError, TerminalService

__all__ = ["ServiceError", "TerminalService"]

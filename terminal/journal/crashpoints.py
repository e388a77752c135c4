"""Named crash points: where a power cut or a SIGKILL hurts most, made reproducible for the crash tests.

Why this exists: the journal's whole reason to be is that the terminal can die between any two of its steps
(after the intent is committed, after the host decided but before the answer is recorded, …) and still agree
with the host after a restart. Killing a process "at the right moment" from outside with sleeps is a race that
sometimes lands elsewhere; a named point inside the program lands exactly there, every time.

`crash_point(name)` kills this process with SIGKILL (no cleanup, no atexit, no flush of Python buffers: what
was committed to disk stays, nothing else does) when the environment variable ``POS_TERMINAL_CRASH_AT``
equals `name`, and does nothing otherwise. Production never sets the variable; the cost of a call is one
dictionary lookup. The names in `CRASH_POINTS` are the ones the program calls; an unknown name never fires
(a test must therefore check that its process really died of SIGKILL).
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_POINTS", "ENVIRONMENT", "crash_point"]

ENVIRONMENT = "POS_TERMINAL_CRASH_AT"

CRASH_POINTS: dict[str, str] = {
    "sale.intent": "sale INTENT committed, the request not yet sent",
    "sale.sent": "the host answered the sale, the answer not yet recorded",
    "sale.answered": "the answer recorded (ANSWERED), the outcome not yet shown",
    "reversal.queued": "reversal queued (NEEDS_REVERSAL), not yet sent",
    "reversal.sent": "the host acknowledged the reversal, the acknowledgement not yet recorded",
    "advice.queued": "offline approval queued as an advice (ADVICE_PENDING), not yet sent",
    "advice.sent": "the host acknowledged the advice, the acknowledgement not yet recorded",
    "settlement.begun": "settlement ticket committed, the 0500 not yet sent",
    "settlement.sent": "the host answered the settlement, the answer not yet recorded",
    "settlement.recorded": "a balanced settlement recorded (batch closed), not yet signed on again",
    "fare.torn_saved": "transit purchase remembered as possibly torn, DEBIT not yet sent",
    "fare.clearing_answered": "transit clearing answered a batch of fares, the answer not yet recorded in the journal",
    "fare.debited": "the card answered DEBIT (or PROVE), the torn-purchase memory not yet cleared nor the fare's "
                    "record (TAC) kept",
    "load.credit_saved": "transit load remembered as possibly credited, CREDIT FOR LOAD not yet sent",
    "load.credited": "the card answered CREDIT FOR LOAD (or PROVE), the load not yet recorded as credited",
}


def crash_point(name: str) -> None:
    """SIGKILL this process here when ``POS_TERMINAL_CRASH_AT`` names this point; a no-op otherwise."""
    if os.environ.get(ENVIRONMENT) == name:
        os.kill(os.getpid(), signal.SIGKILL)

"""`python -m posdemo [--once]`: the whole stack and the seed's story (the README's main command).

Without --once the stack keeps running after the story until Ctrl-C, for the dashboard and for trying things by
hand. Exit status: 0 when every step had the expected outcome (and, without --once, the stack was then stopped
with Ctrl-C); 1 when a step failed; 2 when the demo could not start; 130 when interrupted during the story.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from firmware.privatefiles import private_umask
from posdemo.stack import WEB_URL, DemoError, Stack, Stopped
from posdemo.story import Story, summary_lines


def _say(text: str) -> None:
    print(text, flush=True)


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    with private_umask():  # var/demo: the world's keys, the acquirer's database, the logs; the children inherit it
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m posdemo",
        description="Start the acquirer stub, a software PN532 with the demo phone and the terminal service, "
                    "then play the seed's story (bind a card, ECR sale, metro fare, lost phone).",
    )
    parser.add_argument("--once", action="store_true", help="exit after the story (status 0 only if every step "
                                                            "had the expected outcome)")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`&`)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    started = time.monotonic()
    stack = Stack(say=_say)
    status, story_played = 0, False
    try:
        _say("QuickPass POS demo (test world only: no real cards, banks or money)")
        stack.start()
        _say(f"stack up in {time.monotonic() - started:.1f} s")
        assert stack.world is not None
        results = Story(stack, say=_say).play()
        for line in summary_lines(results, stack.world.users()):
            _say(line)
        status, story_played = (0 if all(r.ok for r in results) else 1), True
        _say(f"story played in {time.monotonic() - started:.1f} s in all")
        if not args.once:
            _say(f"\nthe stack keeps running: open {WEB_URL}/dashboard/ in a browser; Ctrl-C stops it")
            while not (dead := stack.dead_children()):
                time.sleep(0.5)
            _say(f"posdemo: the {', '.join(dead)} stopped by itself; stopping the rest")
            status = status or 1
    except DemoError as error:
        print(f"posdemo: {error}", file=sys.stderr, flush=True)
        status = 2
    except (KeyboardInterrupt, Stopped) as interrupt:
        what = "Ctrl-C" if isinstance(interrupt, KeyboardInterrupt) else str(interrupt)
        _say(f"\nposdemo: {what}: stopping the stack")
        if not story_played:
            status = 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        stack.stop()
        _say("posdemo: stopped; no process left running")
    return status


if __name__ == "__main__":
    sys.exit(main())

"""The customer display (issue #12 §2): the screen model, the page and its stream on the terminal's endpoint, and
the page in a real headless Chromium at the official 7" touchscreen's 800×480 following an approval, a
See-phone re-tap, a decline and a torn card, in order. Its screenshots are kept in var/display-report/ for
people to look at."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser import checked_page, chromium
from hostserver import free_port
from playwright.sync_api import Page, expect
from waits import until

from firmware.issuing.layout import World
from firmware.simulator.rig import SoftwareRig
from terminal.assemble import terminal
from terminal.config import ConfigError, FeedbackPins, Tones, load_config
from terminal.events import Event, Step
from terminal.service import TerminalService
from terminal.service.endpoint import DISPLAY_POLICY, KEYPAD_LOCK_SECONDS, KEYPAD_TRIES, MAX_DISPLAYS, KeypadLock
from terminal.ui.feedback import Feedback, Shown
from terminal.ui.gpio import SimulatedGpio
from terminal.ui.screen import Screen

REPORT = Path(__file__).resolve().parents[2] / "var" / "display-report"
PINS = FeedbackPins()
ISSUER = "icbc-debit"  # ¥5,000.00 in its account: ¥6,000.00 is declined online (51)
STEP_SECONDS = 20.0


# -- the model ---------------------------------------------------------------------------------------------------


def test_each_state_gets_the_standard_headline_its_detail_and_a_mood() -> None:
    feedback = Feedback(SimulatedGpio(), PINS, Tones(), reading_step=0, idle_blink=None)
    screen = Screen()
    feedback.watch(screen.show)
    seen = []
    for show in (lambda: feedback.ready(12_34), feedback.reading, feedback.card_read,
                 lambda: feedback.approved(11_11, 1_23), feedback.see_phone, feedback.try_again,
                 lambda: feedback.declined("Insufficient funds"), feedback.idle):
        show()
        view = screen.current()[1]
        seen.append((view["headline"], view["detail"], view["amount"], view["mood"], view["lights"]))
    feedback.close()
    assert seen == [
        ("Present card", "", "¥12.34", "neutral", [True, False, False, False]),
        ("Processing", "Hold the card or phone still", "¥12.34", "neutral", [True, True, True, False]),
        ("Card read OK", "Remove card", "¥12.34", "neutral", [True, True, True, True]),
        ("Approved", "Charged ¥11.11 (¥1.23 off)", "¥12.34", "ok", [True, True, True, True]),
        ("See phone for instructions", "Then present the phone again", "¥12.34", "attention",
         [True, False, False, False]),
        ("Try again", "Present the card again", "¥12.34", "attention", [True, False, False, False]),
        ("Declined", "Insufficient funds", "¥12.34", "error", [False, False, False, False]),
        ("Welcome", "Present a card or phone when asked", "", "neutral", [True, False, False, False]),
    ]


def test_a_watcher_hears_once_per_state_and_at_each_blink() -> None:
    feedback = Feedback(SimulatedGpio(), PINS, Tones(), reading_step=0, idle_blink=(0.02, 0.02))
    heard: list[Shown] = []
    feedback.watch(heard.append)
    feedback.ready(100)
    feedback.declined("Card error")
    assert [(s.state, s.message) for s in heard] == [("off", ""), ("ready", "Present card"),
                                                   ("declined", "Declined: Card error")]
    feedback.idle()
    until(lambda: len(heard) >= 8, 5, "the idle light to blink")
    feedback.close()
    blinks = [s.lights[0] for s in heard[3:8]]
    assert all(s.state == "idle" for s in heard[3:8]) and blinks == [True, False, True, False, True]


def test_a_stream_gets_every_view_in_order_or_only_the_latest_when_too_far_behind() -> None:
    screen = Screen(history=4)
    for n in range(3):
        screen.show(Shown("ready", f"m{n}", (True, False, False, False), n))
    assert [(v, view["message"]) for v, view in screen.after(0, 1)] == [(1, "m0"), (2, "m1"), (3, "m2")]
    for n in range(3, 10):
        screen.show(Shown("ready", f"m{n}", (True, False, False, False), n))
    assert [(v, view["message"]) for v, view in screen.after(1, 1)] == [(10, "m9")]
    assert screen.after(10, 0.05) == []


# -- the page on the terminal's endpoint ---------------------------------------------------------------------------


@dataclass
class Running:
    service: TerminalService
    base: str


@contextlib.contextmanager
def _service(config: Path, *, keypad_pin: str | None = None) -> Iterator[Running]:
    """`pos-terminal run`'s service on a thread, its local ECR endpoint (display and keypad) on a free port."""
    port = free_port()
    listen = f'listen = "127.0.0.1:{port}"' + (f'\nkeypad_pin = "{keypad_pin}"' if keypad_pin else "")
    copy = config.with_name(f"service-{port}.toml")  # beside it: the same relative paths
    copy.write_text(config.read_text().replace('listen = "127.0.0.1:8381"', listen))
    loaded = load_config(copy)
    services: list[TerminalService] = []

    def run() -> None:  # the parts belong to the thread that runs the service (the journal is single-owner)
        with terminal(loaded) as parts:
            services.append(TerminalService(loaded, parts, sale_wait=STEP_SECONDS))
            services[0].run()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    until(lambda: services and services[0].state == "idle", 20, "the service to start")
    try:
        assert services[0].url is not None
        yield Running(services[0], services[0].url)
    finally:
        services[0].stop()
        worker.join(15)
    assert not worker.is_alive()


def _get(base: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", path, headers=headers or {})
    return connection.getresponse()


def _post(base: str, path: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json",
                                                                     **(headers or {})})
    answer = connection.getresponse()
    return answer.status, json.loads(answer.read()), dict(answer.getheaders())


def test_the_page_its_files_and_its_stream_are_served_by_the_terminal(rig: SoftwareRig, config: Path) -> None:
    with _service(config) as running:
        page = _get(running.base, "/display")
        assert page.status == 200 and page.getheader("Content-Type") == "text/html; charset=utf-8"
        assert page.getheader("Content-Security-Policy") == DISPLAY_POLICY and "<script" in page.read().decode()
        assert page.getheader("X-Frame-Options") == "DENY"
        script = _get(running.base, "/display/display.js")
        assert script.status == 200 and script.getheader("Content-Type").startswith("text/javascript")
        for path in ("/display/../status", "/display/display.html.bak", "/display/"):
            assert _get(running.base, path).status == 404, path
        assert _get(running.base, "/display/events", {"Origin": "http://evil.example"}).status == 403

        stream = _get(running.base, "/display/events")
        assert stream.status == 200 and stream.getheader("Content-Type") == "text/event-stream; charset=utf-8"
        assert stream.readline() == b"retry: 1000\n"
        first = json.loads(stream.readline().removeprefix(b"data: "))
        assert (first["state"], first["headline"]) == ("idle", "Welcome")
        running.service.parts.counter.tell(Step.READY, amount=2_00)
        stream.readline()  # the blank line ending the first event
        views = [json.loads(stream.readline().removeprefix(b"data: "))]
        while views[-1]["state"] != "ready":  # a blink of the idle light may come first
            stream.readline()
            views.append(json.loads(stream.readline().removeprefix(b"data: ")))
        assert (views[-1]["headline"], views[-1]["amount"]) == ("Present card", "¥2.00")
        stream.close()


class Pauses:
    """An observer that holds the sale at the chosen steps until the test has looked (and taken a screenshot):
    what the display shows for a moment stays long enough to be seen."""

    def __init__(self, steps: set[Step]) -> None:
        self.steps = steps
        self.reached: queue.Queue[Event] = queue.Queue()
        self._go = threading.Event()

    def __call__(self, event: Event) -> None:
        if event.step in self.steps:
            self._go.clear()
            self.reached.put(event)
            self._go.wait(STEP_SECONDS)

    def next(self) -> Event:
        return self.reached.get(timeout=STEP_SECONDS)

    def go_on(self) -> None:
        self._go.set()


def _shows(page: Page, headline: str, name: str | None = None) -> None:
    expect(page.locator("#headline")).to_have_text(headline)
    if name is not None:
        REPORT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(REPORT / f"{name}.png"))


def test_the_display_in_chromium_follows_an_approval_see_phone_a_decline_and_a_torn_card(
    rig: SoftwareRig, world: World, config: Path
) -> None:
    card = world.path(Path(next(c for c in world.cards() if c["issuer"] == ISSUER)["file"]))
    pauses = Pauses({Step.SEE_PHONE, Step.DONE})

    def shopper(event: Event) -> None:  # after the pause: touches the phone's sensor, presents the card again
        if event.step is Step.SEE_PHONE:
            rig.fingerprint("right-thumb", world.demo_phone)
        elif event.step is Step.TRY_AGAIN:
            rig.present(card)

    with _service(config) as running, chromium() as browser, checked_page(browser, 800, 480) as page:
        running.service.parts.counter.observers += [pauses, shopper]
        page.goto(f"{running.base}/display")
        _shows(page, "Welcome", "800x480-welcome")

        def sale(amount: int) -> threading.Thread:
            job = running.service.submit_local(amount)
            assert job is not None
            waiter = threading.Thread(target=job.done.wait, args=(STEP_SECONDS * 3,), daemon=True)
            waiter.start()
            return waiter

        rig.present(card)  # 1. an approval, offline (under the floor limit)
        done = sale(12_34)
        assert pauses.next().step is Step.DONE
        _shows(page, "Approved", "800x480-approved")
        expect(page.locator("#detail")).to_have_text("Charged ¥12.34")
        pauses.go_on()
        done.join()

        rig.present(world.demo_phone)  # 2. the locked phone: See phone, the fingerprint, the re-tap
        done = sale(12_34)
        assert pauses.next().step is Step.SEE_PHONE
        _shows(page, "See phone for instructions", "800x480-see-phone")
        pauses.go_on()
        assert pauses.next().step is Step.DONE
        _shows(page, "Approved")
        expect(page.locator("#detail")).to_have_text("Charged ¥11.11 (¥1.23 off)")
        pauses.go_on()
        done.join()

        rig.present(card)  # 3. more than the account holds: declined online
        done = sale(6_000_00)
        assert pauses.next().step is Step.DONE
        _shows(page, "Declined", "800x480-declined")
        pauses.go_on()
        done.join()

        rig.present(card)  # 4. the card leaves during the read: Try again, presented again, approved
        rig.remove_card_after(3)
        done = sale(12_34)
        assert pauses.next().step is Step.DONE
        _shows(page, "Approved")
        pauses.go_on()
        done.join()
        page.set_viewport_size({"width": 1920, "height": 1080})
        _shows(page, "Approved", "1920x1080-approved")
        shown = page.evaluate("window.shown")

    headlines = [entry.split(": ", 1)[1].split(" — ")[0] for entry in shown]
    assert headlines[0] == "Welcome"
    sales = " | ".join(h for h in headlines if h != "Welcome").split("Present card | ")  # idle between sales
    assert sales[0] == ""
    assert [sale.strip(" |") for sale in sales[1:]] == [
        "Processing | Card read OK | Approved",
        "Processing | See phone for instructions | Processing | Card read OK | Approved",
        "Processing | Card read OK | Declined",
        "Processing | Try again | Processing | Card read OK | Approved",
    ], headlines
    for name in ("800x480-welcome", "800x480-approved", "800x480-see-phone", "800x480-declined",
                 "1920x1080-approved"):
        assert (REPORT / f"{name}.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_displays_beyond_the_limit_get_503_and_a_closed_one_frees_its_slot_at_once(
    rig: SoftwareRig, config: Path
) -> None:
    with _service(config) as running:
        streams = [_get(running.base, "/display/events") for _ in range(MAX_DISPLAYS)]
        assert [stream.status for stream in streams] == [200] * MAX_DISPLAYS
        refused = _get(running.base, "/display/events")
        assert refused.status == 503 and refused.getheader("Retry-After") == "5"
        streams.pop().close()  # the tab goes away
        again = until(lambda: (s := _get(running.base, "/display/events")).status == 200 and s, 10,
                      "the freed slot")
        for stream in [*streams, again]:
            stream.close()


# -- the merchant keypad -------------------------------------------------------------------------------------------


def test_the_keypad_needs_its_pin_and_locks_after_five_wrong_ones(rig: SoftwareRig, world: World,
                                                                 config: Path) -> None:
    with _service(config) as running:  # no keypad_pin: the keypad is off
        code, body, _ = _post(running.base, "/keypad/sale", {"amount": 100, "pin": "0000"})
        assert code == 403 and "set [ecr] keypad_pin" in body["error"]
    card = world.path(Path(next(c for c in world.cards() if c["issuer"] == ISSUER)["file"]))
    with _service(config, keypad_pin="482916") as running:
        assert _post(running.base, "/keypad/sale", {"amount": 100, "pin": "482916"},
                     {"Origin": "http://evil.example"})[0] == 403  # a page elsewhere cannot use it
        assert _post(running.base, "/keypad/sale", {"amount": 0, "pin": "482916"})[0] == 400
        rig.present(card)
        code, sale, _ = _post(running.base, "/keypad/sale", {"amount": 12_34, "pin": "482916"})
        assert code == 200 and sale["outcome"] == "Approved" and "Amount ¥12.34" in sale["receipt"]
        for guess in ("000000", "111111", "222222", "333333"):
            code, body, _ = _post(running.base, "/keypad/sale", {"amount": 100, "pin": guess})
            assert (code, body) == (403, {"error": "wrong PIN"})
        code, body, headers = _post(running.base, "/keypad/sale", {"amount": 100, "pin": 482916})  # not a string
        assert code == 403
        code, body, headers = _post(running.base, "/keypad/sale", {"amount": 100, "pin": "482916"})
        assert code == 429 and 295 <= int(headers["Retry-After"]) <= KEYPAD_LOCK_SECONDS  # even the right one now
        assert running.service.status()["last_sale"]["amount"] == 12_34  # nothing ran after the first sale


def test_the_keypad_lock_ends_by_itself_and_a_right_pin_forgives_the_wrong_ones() -> None:
    now = [0.0]
    lock = KeypadLock(clock=lambda: now[0])
    for _ in range(KEYPAD_TRIES - 1):
        lock.wrong()
    lock.forgive()
    lock.wrong()
    assert lock.seconds_left() == 0  # four wrong, one right, one wrong: not locked
    for _ in range(KEYPAD_TRIES - 1):
        lock.wrong()
    assert lock.seconds_left() == KEYPAD_LOCK_SECONDS
    now[0] = KEYPAD_LOCK_SECONDS - 0.5
    assert lock.seconds_left() == 1
    now[0] = KEYPAD_LOCK_SECONDS
    assert lock.seconds_left() == 0


def test_a_keypad_pin_that_is_not_4_to_12_digits_is_a_configuration_error(config: Path) -> None:
    for bad in ('"12a4"', '"123"', "482916", '"1234567890123"'):
        text = config.read_text().replace('listen = "127.0.0.1:8381"', f'listen = "127.0.0.1:8381"\nkeypad_pin = {bad}')
        broken = config.with_name("broken.toml")
        broken.write_text(text)
        with pytest.raises(ConfigError, match=r"ecr\.keypad_pin: not 4 to 12 digits"):
            load_config(broken)


def test_the_keypad_in_chromium_types_an_amount_asks_the_pin_and_shows_the_receipt(
    rig: SoftwareRig, world: World, config: Path
) -> None:
    card = world.path(Path(next(c for c in world.cards() if c["issuer"] == ISSUER)["file"]))
    with (_service(config, keypad_pin="2468") as running, chromium() as browser,
          checked_page(browser, 800, 480) as page):
        page.goto(f"{running.base}/keypad")
        for digit in "1234":
            page.locator(f'#keys button[data-key="{digit}"]').click()
        expect(page.locator("#amount")).to_have_text("¥12.34")
        expect(page.locator("#charge")).to_have_text("Charge ¥12.34")
        page.locator("#charge").click()
        expect(page.locator("#prompt")).to_have_text("Keypad PIN")
        for digit in "2468":
            page.locator(f'#keys button[data-key="{digit}"]').click()
        expect(page.locator("#amount")).to_have_text("••••")
        rig.present(card)
        page.locator("#charge").click()
        expect(page.locator("#outcome")).to_have_text("Approved ¥12.34", timeout=STEP_SECONDS * 1000)
        expect(page.locator("#receipt")).to_contain_text("Amount ¥12.34")
        expect(page.locator("#state")).to_contain_text("Approved")  # the customer display's stream, followed
        REPORT.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(REPORT / "800x480-keypad.png"))
        assert "2468" not in page.content()  # the PIN is never shown
        for path in ("/keypad", "/display"):  # a merchant's phone: nothing wider than the screen
            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(running.base + path)
            expect(page.locator("body")).to_be_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
            page.screenshot(path=str(REPORT / f"390x844-{path.strip('/')}.png"), full_page=True)
    assert running.service.status()["last_sale"]["amount"] == 12_34

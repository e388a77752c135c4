"""The suite's reports: JUnit XML for CI, and one self-contained HTML file (inline CSS, no scripts or
external assets) with a timeline per scenario.

Every text that enters a report has been masked where it was recorded (hil_trace); the writers mask the
world's PANs once more as a last line of defence, so a careless failure message cannot leak one either.
"""

from __future__ import annotations

import datetime
import html
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hil_trace import LANES, Trace, mask_pans_in


@dataclass
class ScenarioResult:
    nodeid: str
    name: str
    outcome: str  # passed / failed / skipped / error
    seconds: float
    message: str = ""
    proves: str = ""
    trace: Trace | None = None

    @classmethod
    def from_report(cls, item: pytest.Item, report: pytest.TestReport, trace: Trace | None) -> ScenarioResult:
        scenario = getattr(item, "callspec", None) and item.callspec.params.get("scenario")
        outcome = report.outcome if report.when == "call" else ("skipped" if report.skipped else "error")
        message = ""
        if report.failed:
            message = report.longreprtext[-4000:]
        elif report.skipped and isinstance(report.longrepr, tuple):
            message = str(report.longrepr[2])
        return cls(item.nodeid, getattr(scenario, "name", item.name), outcome, report.duration, message,
                   getattr(scenario, "proves", ""), trace)


@dataclass
class Collector:
    results: list[ScenarioResult] = field(default_factory=list)
    pans: list[str] = field(default_factory=list)  # every PAN and token of the worlds used: never shown

    def record(self, result: ScenarioResult) -> None:
        for index, earlier in enumerate(self.results):
            if earlier.nodeid == result.nodeid:  # a teardown error after a pass: the error wins
                if result.outcome in ("failed", "error") or earlier.outcome == "skipped":
                    result.trace = result.trace or earlier.trace
                    result.seconds += earlier.seconds
                    self.results[index] = result
                return
        self.results.append(result)

    def write(self, folder: Path, *, rig: str) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        junit, report = folder / "junit.xml", folder / "report.html"
        junit.write_text(render_junit(self.results, rig, self.pans), encoding="utf-8")
        report.write_text(render_html(self.results, rig, self.pans), encoding="utf-8")
        return [junit, report]


COLLECTOR = Collector()


def render_junit(results: list[ScenarioResult], rig: str, pans: list[str]) -> str:
    root = ET.Element("testsuites", name="hil")
    suite = ET.SubElement(root, "testsuite", name=f"hil-{rig}", tests=str(len(results)),
                       failures=str(sum(r.outcome == "failed" for r in results)),
                       errors=str(sum(r.outcome == "error" for r in results)),
                       skipped=str(sum(r.outcome == "skipped" for r in results)),
                       time=f"{sum(r.seconds for r in results):.3f}",
                       timestamp=datetime.datetime.now().isoformat(timespec="seconds"))
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="rig", value=rig)
    for result in results:
        module, _, _ = result.nodeid.partition("::")
        case = ET.SubElement(suite, "testcase", classname=module.replace("/", ".").removesuffix(".py"),
                             name=result.name, time=f"{result.seconds:.3f}")
        text = mask_pans_in(result.message, pans)
        if result.outcome == "failed":
            ET.SubElement(case, "failure", message=text.splitlines()[-1] if text else "failed").text = text
        elif result.outcome == "error":
            ET.SubElement(case, "error", message=text.splitlines()[-1] if text else "error").text = text
        elif result.outcome == "skipped":
            ET.SubElement(case, "skipped", message=text)
        if result.proves:
            ET.SubElement(case, "system-out").text = result.proves
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin:0}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;
vertical-align:top}th{background:#f3f3f3}
.passed{color:#0a6b2d}.failed,.error{color:#b00020}.skipped{color:#8a6d00}
details{border:1px solid #ddd;border-radius:4px;margin:.6em 0;padding:.4em .8em}
summary{cursor:pointer}code,pre,.t td{font-family:ui-monospace,monospace;font-size:12px}
pre{white-space:pre-wrap;background:#fff5f5;padding:.5em}
.lane{font-weight:bold}.rig{color:#6a1b9a}.uart{color:#555}.apdu{color:#0d47a1}.ui{color:#1b5e20}
.gpio{color:#e65100}.host{color:#4e342e}.note{color:#37474f}
"""


def render_html(results: list[ScenarioResult], rig: str, pans: list[str]) -> str:
    def esc(text: object) -> str:
        return html.escape(mask_pans_in(str(text), pans))

    counts = {o: sum(r.outcome == o for r in results) for o in ("passed", "failed", "error", "skipped")}
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>HIL report</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>QuickPass POS — hardware-in-the-loop report (rig: {esc(rig)})</h1>",
        f"<p>{datetime.datetime.now():%Y-%m-%d %H:%M:%S} · " + " · ".join(f"{n} {o}" for o, n in counts.items())
        + ". Card data is masked (PAN: BIN and last four, track 2 and keys hidden); UART frames that carry "
        "APDUs show their size only.</p>",
        "<table><tr><th>scenario</th><th>result</th><th>measured s</th><th>modelled s</th><th>proves</th></tr>",
    ]
    for result in results:
        modelled = sum(result.trace.modelled.values()) if result.trace and result.trace.modelled else None
        parts.append(
            f"<tr><td><a href='#{esc(result.name)}'>{esc(result.name)}</a></td>"
            f"<td class={result.outcome}>{result.outcome}</td><td>{result.seconds:.2f}</td>"
            f"<td>{'' if modelled is None else f'{modelled:.3f}'}</td><td>{esc(result.proves)}</td></tr>")
    parts.append("</table>")
    for result in results:
        parts.append(f"<details id='{esc(result.name)}'><summary><h2 style='display:inline'>{esc(result.name)}"
                     f"</h2> — <span class={result.outcome}>{result.outcome}</span> in {result.seconds:.2f} s"
                     "</summary>")
        if result.proves:
            parts.append(f"<p>{esc(result.proves)}</p>")
        if result.message:
            parts.append(f"<pre>{esc(result.message)}</pre>")
        trace = result.trace
        if trace is not None:
            if trace.facts:
                parts.append("<p>" + "<br>".join(f"<b>{esc(k)}</b>: {esc(v)}" for k, v in trace.facts.items())
                             + "</p>")
            if trace.measured or trace.modelled:
                parts.append("<table><tr><th>time</th><th>seconds</th></tr>" + "".join(
                    f"<tr><td>measured: {esc(k)}</td><td>{v:.4f}</td></tr>" for k, v in trace.measured.items())
                    + "".join(f"<tr><td>modelled: {esc(k)}</td><td>{v:.4f}</td></tr>"
                              for k, v in trace.modelled.items()) + "</table>")
            parts.append("<table class=t><tr><th>ms</th><th>lane</th><th>event</th></tr>")
            for event in trace.sorted_events():
                lane = event.lane if event.lane in LANES else "note"
                parts.append(f"<tr><td>{event.seconds * 1000:9.1f}</td><td class='lane {lane}'>{lane}</td>"
                             f"<td class={lane}>{esc(event.text)}</td></tr>")
            parts.append("</table>")
        parts.append("</details>")
    parts.append("</body></html>\n")
    return "".join(parts)

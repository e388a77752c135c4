"""The operator's dashboard at /dashboard/: pages, demo switches, suspend/resume and the virtual ECR.

Every view is for operators only (one `before_request` guard, so a new page cannot forget it). Changes
are POST forms with the CSRF token; each change and its `events` row commit in one transaction, so the
live feed shows exactly what happened.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from acquirer_stub import exception_queue
from acquirer_stub.dashboard import charts, clearing, export, feed, overview, present, search, transit
from acquirer_stub.ecr import handover
from acquirer_stub.store import ecr as ecr_store
from acquirer_stub.store import events, outbox, tokens, transactions
from acquirer_stub.store import issuers as issuer_store
from acquirer_stub.store import settlements as settlement_store
from acquirer_stub.store import terminals as terminal_store
from acquirer_stub.store import transit as transit_store
from acquirer_stub.store.db import get_db, transaction
from acquirer_stub.store.events import record as _event
from acquirer_stub.tsp import lifecycle
from acquirer_stub.web import role_required
from hostproto.money import parse_yuan

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

FORCED_DECLINE_CODES = ("01", "03", "04", "05", "12", "13", "14", "41", "43", "46", "51", "54", "55", "57", "58",
                        "61", "62", "63", "65", "91", "92", "94", "96")
MAX_ADDED_LATENCY_MS = 60_000  # above the terminal's timeout: enough to demonstrate timeouts and reversals
MAX_ECR_AMOUNT = 99_999_999  # fen: ¥999,999.99


@bp.before_request
@role_required("operator")
def _operators_only() -> None:
    """Runs before every dashboard view: anonymous → login page, cardholder → 403."""
    return None


@bp.app_template_filter("yuan")
def _yuan(fen: int | None) -> str:
    return present.yuan(fen)


@bp.app_template_filter("when")
def _when(text: str | None) -> str:
    return present.when(text)


@bp.app_template_filter("scrub")
def _scrub(text: Any) -> str:
    return present.scrub(text)


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {"rc_text": charts.response_text, "entry_mode": present.entry_mode, "mask_phone": present.mask_phone,
            "mask_par": present.mask_par}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _now_text() -> str:
    return _now().isoformat(timespec="seconds")


def _recent_transactions(connection: sqlite3.Connection, limit: int = 30) -> list[dict[str, Any]]:
    return [feed.transaction_summary(row) for row in transactions.recent(connection, limit)]


# --- overview and live feed ----------------------------------------------------------------------------------


@bp.get("/")
def index() -> str:
    connection = get_db()
    last_event = feed.latest_event_id(connection)  # read first: a row that lands meanwhile comes twice, never not
    minutes = overview.window(request.args.get("minutes", type=int))
    shown = overview.figures(connection, now=_now(), minutes=minutes)
    activity = events.recent(connection, 15)
    return render_template(
        "dashboard/index.html", stats=shown.stats, kpis=shown.kpis, svg=shown.svg, windows=overview.WINDOWS,
        rows=_recent_transactions(connection),
        activity=[feed.event_message(connection, row) for row in activity], last_event=last_event,
    )


@bp.get("/overview.json")
def overview_json() -> Response:
    """The overview's figures and charts again, for the page to refresh itself without a reload."""
    minutes = overview.window(request.args.get("minutes", type=int))
    shown = overview.figures(get_db(), now=_now(), minutes=minutes)
    return Response(json.dumps({"minutes": minutes, "kpis": shown.kpis,
                                "charts": {name: str(svg) for name, svg in shown.svg.items()}}),
                    mimetype="application/json", headers={"Cache-Control": "no-store"})


@bp.get("/feed")
def feed_stream() -> Response:
    """SSE: resumes after Last-Event-ID on a reconnect, else after `?after=`, else from now."""
    try:
        after = feed.event_id(request.headers.get("Last-Event-ID") or request.args.get("after"))
    except ValueError:
        return Response(json.dumps({"error": "Last-Event-ID and after must be an event id (digits)"}), status=400,
                        mimetype="application/json")
    config = current_app.config
    client_gone = request.environ.get("waitress.client_disconnected")
    body = feed.stream(
        config["DATABASE"], after,
        poll_seconds=float(config.get("FEED_POLL_SECONDS", feed.POLL_SECONDS)),
        heartbeat_seconds=float(config.get("FEED_HEARTBEAT_SECONDS", feed.HEARTBEAT_SECONDS)),
        max_seconds=float(config.get("FEED_MAX_SECONDS", feed.MAX_SECONDS)),
        client_gone=client_gone if callable(client_gone) else None,
    )
    return Response(body, mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.get("/transactions")
def transaction_search() -> tuple[str, int]:
    query = search.parse(request.args)
    rows: list[dict[str, Any]] = []
    total = 0
    if not query.errors:
        connection = get_db()
        total = transactions.count(connection, query.search)
        found = transactions.search(connection, query.search, limit=search.PAGE_SIZE,
                                    offset=(query.page - 1) * search.PAGE_SIZE)
        rows = [feed.transaction_summary(row) for row in found]
    pages = max(1, -(-total // search.PAGE_SIZE))
    return render_template("dashboard/transactions.html", query=query, rows=rows, total=total,
                           pages=min(pages, search.MAX_PAGE), kinds=search.KINDS, csv_limit=search.CSV_LIMIT,
                           page_size=search.PAGE_SIZE), 400 if query.errors else 200


@bp.get("/transactions.csv")
def transaction_export() -> Response:
    """The whole result (up to CSV_LIMIT rows, newest first), not just the page shown."""
    query = search.parse(request.args)
    if query.errors:
        return Response("\n".join(query.errors) + "\n", status=400, mimetype="text/plain")
    rows = transactions.search(get_db(), query.search, limit=search.CSV_LIMIT)
    name = f"transactions-{_now():%Y%m%d-%H%M%S}.csv"
    return Response(export.lines(rows), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/tx/<int:transaction_id>")
def transaction_detail(transaction_id: int) -> str:
    connection = get_db()
    row = transactions.detail(connection, transaction_id)
    if row is None:
        abort(404)
    timeline = events.of_transaction(connection, row.id, row.tid, row.stan)
    return render_template(
        "dashboard/transaction.html", tx=row, icc=present.icc_items(row.icc_masked),
        response=present.json_text(row.response), request=present.json_text(row.request_masked),
        related=transactions.related(connection, row),
        timeline=[feed.event_message(connection, event) for event in timeline],
    )


# --- terminals, devices and tokens, SMS ----------------------------------------------------------------------


@bp.get("/terminals")
def terminals() -> str:
    rows = terminal_store.activity(get_db(), _now().date(), handover.OPEN_STATES)
    return render_template("dashboard/terminals.html", terminals=rows)


@bp.get("/terminals/<tid>")
def terminal(tid: str) -> str:
    """One terminal: what it last reported of its health, its open batch and its settled batches."""
    connection = get_db()
    found = terminal_store.page(connection, tid)
    if found is None:
        abort(404)
    reported = present.load_json(found.health)
    count, amount = transactions.batch_debits(connection, tid, found.batch)
    open_rows = transactions.in_batch(connection, tid, found.batch, 200) if found.signed_on else []
    today = datetime.datetime.now().astimezone().date()  # fares are stamped in the host's local time
    fares = transit_store.figures_per_gate(connection, today, tid=tid)
    return render_template(
        "dashboard/terminal.html", terminal=found, health=reported if isinstance(reported, dict) else None,
        health_at=found.health_at, batch_count=count, batch_amount=amount,
        rows=[feed.transaction_summary(row) for row in open_rows],
        batches=_batches(settlement_store.of_terminal(connection, tid, 20)), fares=fares[0] if fares else None,
        today=today, exceptions=exception_queue.items(connection, "open", tid=tid),
    )


@bp.get("/devices")
def devices() -> str:
    connection = get_db()
    return render_template("dashboard/devices.html", devices=tokens.devices(connection),
                           tokens=tokens.tokens(connection),
                           suspend_reasons=lifecycle.SUSPEND_REASONS, resume_reasons=lifecycle.RESUME_REASONS)


@bp.post("/devices/<device_id>/wallet")
def device_wallet(device_id: str) -> Response:
    """Lost phone: the token service suspends the device's tokens (and resumes exactly those later)."""
    enabled = request.form.get("enabled") == "1"
    reason = request.form.get("reason", "")
    try:
        changes = lifecycle.set_device_wallet(get_db(), device_id, enabled, reason, by=lifecycle.OPERATOR)
    except lifecycle.NotFoundError:
        abort(404)
    except lifecycle.LifecycleError as error:
        flash(str(error))
    else:
        state = "on" if enabled else "off"
        flash(f"Wallet on {device_id} turned {state}: {len(changes)} token(s) changed.")
    return redirect(url_for("dashboard.devices"))


@bp.post("/tokens/<int:token_id>/status")
def token_status(token_id: int) -> Response:
    status = request.form.get("status", "")
    try:
        change = lifecycle.set_token_status(get_db(), token_id, status, request.form.get("reason", ""),
                                            by=lifecycle.OPERATOR)
    except lifecycle.NotFoundError:
        abort(404)
    except lifecycle.LifecycleError as error:
        flash(str(error))
    else:
        flash(f"Token {change.token_masked}: {change.old} → {change.new}.")
    return redirect(url_for("dashboard.devices"))


@bp.get("/sms")
def sms() -> str:
    return render_template("dashboard/sms.html", messages=outbox.recent(get_db(), 200))


# --- reversals, advices, settlement, clearing ----------------------------------------------------------------


@bp.get("/reversals")
def reversals() -> str:
    rows = transactions.reversals_and_advices(get_db(), 300)
    return render_template("dashboard/reversals.html",
                           reversals=[r for r in rows if r.kind == "reversal"],
                           advices=[r for r in rows if r.kind == "advice"])


def _batches(rows: list[settlement_store.Settlement]) -> list[dict[str, Any]]:
    return [{"row": row, "differences": clearing.batch_differences(present.load_json(row.terminal_totals),
                                                                   present.load_json(row.host_totals)),
             "figures": present.load_json(row.figures)} for row in rows]


@bp.get("/settlements")
def settlements() -> str:
    return render_template("dashboard/settlements.html", batches=_batches(settlement_store.recent(get_db(), 100)))


@bp.get("/exceptions")
def exceptions() -> str:
    connection = get_db()
    return render_template("dashboard/exceptions.html", open_items=exception_queue.items(connection, "open"),
                           resolved=exception_queue.items(connection, "resolved", limit=100),
                           resolutions=exception_queue.RESOLUTIONS, max_note=exception_queue.MAX_NOTE)


@bp.post("/exceptions/<int:item_id>/resolve")
def exception_resolve(item_id: int) -> Response:
    """Close an exception item with a resolution and a note; records who and when, moves no money."""
    connection = get_db()
    resolution = request.form.get("resolution", "")
    try:
        with transaction(connection):
            item = exception_queue.resolve(connection, item_id, resolution,
                                           present.scrub(request.form.get("note", "")),  # a card number typed in
                                           by=current_user.username, now=_now_text())
            if item is None:
                abort(404)
            text = (f"exception #{item_id} ({item.reason}, {present.yuan(item.amount)}, {item.tid}) resolved:"
                    f" {resolution} by {current_user.username}")
            _event(connection, "operator", {"action": "exception_resolve", "exception_id": item_id,
                                            "transaction_id": item.transaction_id, "resolution": resolution,
                                            "text": text})
    except exception_queue.ResolveError as error:
        flash(str(error))
    else:
        flash(f"Exception #{item_id}: {exception_queue.RESOLUTIONS[resolution]}.")
    return redirect(url_for("dashboard.exceptions"))


@bp.get("/clearing")
def clearing_report() -> str:
    try:
        day = datetime.date.fromisoformat(request.args.get("day", ""))
    except ValueError:
        day = _now().date()
    return render_template("dashboard/clearing.html", report=clearing.daily_report(get_db(), day))


@bp.get("/transit")
def transit_report() -> str:
    try:
        day = datetime.date.fromisoformat(request.args.get("day", ""))
    except ValueError:
        day = datetime.datetime.now().astimezone().date()  # fares are stamped in the host's local time
    return render_template("dashboard/transit.html", report=transit.daily_report(get_db(), day))


# --- demo switches and promotions ----------------------------------------------------------------------------


@bp.get("/issuers")
def issuers() -> str:
    connection = get_db()
    return render_template(
        "dashboard/issuers.html", issuers=issuer_store.issuers(connection),
        promotions=issuer_store.promotions(connection),
        codes=FORCED_DECLINE_CODES, max_latency=MAX_ADDED_LATENCY_MS, today=_now().date(),
    )


@bp.post("/issuers/<code>")
def issuer_switch(code: str) -> Response:
    """Issuer down (91), added latency, forced decline: what the engine reads on every authorization."""
    status = "down" if request.form.get("status") == "down" else "up"
    latency = request.form.get("added_latency_ms", type=int)
    forced = request.form.get("forced_decline", "") or None
    if latency is None or not 0 <= latency <= MAX_ADDED_LATENCY_MS or (forced and forced not in FORCED_DECLINE_CODES):
        flash(f"Added latency is 0–{MAX_ADDED_LATENCY_MS} ms; forced decline is one of the listed codes.")
        return redirect(url_for("dashboard.issuers"))
    connection = get_db()
    with transaction(connection):
        name = issuer_store.issuer_name(connection, code)
        if name is None:
            abort(404)
        issuer_store.set_switches(connection, code, status, latency, forced)
        text = f"issuer {name}: {status}, +{latency} ms, forced decline {forced or 'none'}"
        _event(connection, "operator", {"action": "issuer_switch", "issuer": code, "status": status,
                                        "added_latency_ms": latency, "forced_decline": forced, "text": text})
    flash(text)
    return redirect(url_for("dashboard.issuers"))


@bp.post("/promotions")
def promotion_add() -> Response:
    form = request.form
    try:
        percent = int(form.get("percent", ""))
        cap = parse_yuan(form.get("cap", ""))
        starts = datetime.date.fromisoformat(form.get("starts", ""))
        ends = datetime.date.fromisoformat(form.get("ends", ""))
        title = form.get("title", "").strip()
        if not title or len(title) > 120 or not 1 <= percent <= 100 or cap < 0 or ends < starts:
            raise ValueError
    except ValueError:
        flash("A promotion needs a title, a percentage 1–100, a cap in yuan and an end on or after its start.")
        return redirect(url_for("dashboard.issuers"))
    connection = get_db()
    with transaction(connection):
        if issuer_store.issuer_name(connection, form.get("issuer", "")) is None:
            abort(400)
        issuer_store.add_promotion(connection, form["issuer"], title, percent, cap, starts.isoformat(),
                                   ends.isoformat())
        _event(connection, "operator", {"action": "promotion_add", "issuer": form["issuer"],
                                        "text": f"promotion added: {title}"})
    flash(f"Promotion added: {title}")
    return redirect(url_for("dashboard.issuers"))


@bp.post("/promotions/<int:promotion_id>/active")
def promotion_active(promotion_id: int) -> Response:
    active = request.form.get("active") == "1"
    connection = get_db()
    with transaction(connection):
        title = issuer_store.promotion_title(connection, promotion_id)
        if title is None:
            abort(404)
        issuer_store.set_promotion_active(connection, promotion_id, active)
        _event(connection, "operator", {"action": "promotion_active", "promotion_id": promotion_id,
                                        "text": f"promotion {title} {'on' if active else 'off'}"})
    return redirect(url_for("dashboard.issuers"))


# --- virtual ECR ---------------------------------------------------------------------------------------------


@bp.get("/ecr")
def ecr() -> str:
    connection = get_db()
    if handover.overdue(connection):  # a terminal that stopped polling: its lapsed offers and late sales shown now
        with transaction(connection):
            handover.expire_overdue(connection)
    last_event = feed.latest_event_id(connection)
    return render_template(
        "dashboard/ecr.html", terminals=terminal_store.all_terminals(connection),
        requests=[feed.ecr_summary(row) for row in ecr_store.recent(connection, 50)], last_event=last_event,
    )


@bp.post("/ecr")
def ecr_send() -> Response:
    """A sale for a terminal to pick up (see acquirer_stub.ecr for the terminal's side)."""
    tid = request.form.get("tid", "")
    try:
        amount = parse_yuan(request.form.get("amount", ""))
        if not 0 < amount <= MAX_ECR_AMOUNT:
            raise ValueError
    except ValueError:
        flash(f"Enter an amount between ¥0.01 and {present.yuan(MAX_ECR_AMOUNT)}.")
        return redirect(url_for("dashboard.ecr"))
    connection = get_db()
    with transaction(connection):
        if terminal_store.find(connection, tid) is None:
            abort(400)
        ecr_id = ecr_store.add(connection, tid, amount, _now_text())
        _event(connection, "ecr", {"ecr_id": ecr_id, "tid": tid, "state": "pending",
                                   "text": f"ECR sale {present.yuan(amount)} sent to {tid}"})
    flash(f"Sale of {present.yuan(amount)} sent to {tid}: waiting for the terminal.")
    return redirect(url_for("dashboard.ecr"))

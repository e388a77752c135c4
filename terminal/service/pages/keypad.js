// The merchant keypad: type an amount, charge it or top up a transit card with it (the terminal's keypad PIN is
// asked once per page), follow it on the customer display's stream, see the outcome and the receipt.
"use strict";
var fen = 0;
var pin = null;  // the keypad PIN, once typed (kept for this page only)
var typing = null;  // the PIN being typed on the keys, or null while they enter the amount
var busy = false;
var action = "/keypad/sale";  // what OK after the PIN runs: the sale, or "/keypad/load" (a top-up)

function yuan(value) {
  var text = String(Math.floor(value / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return "¥" + text + "." + String(value % 100).padStart(2, "0");
}

function show() {
  var charge = document.getElementById("charge");
  var topup = document.getElementById("topup");
  topup.disabled = busy || typing !== null || fen === 0;
  if (typing !== null) {
    document.getElementById("prompt").textContent = "Keypad PIN";
    document.getElementById("amount").textContent = "•".repeat(typing.length) || " ";
    charge.textContent = "OK";
    charge.disabled = typing.length < 4;
    return;
  }
  document.getElementById("prompt").textContent = "Amount";
  document.getElementById("amount").textContent = yuan(fen);
  charge.disabled = busy || fen === 0;
  charge.textContent = fen ? "Charge " + yuan(fen) : "Charge";
}

function key(name) {
  if (busy) { return; }
  if (typing !== null) {
    if (name === "C") { typing = null; }
    else if (name === "back") { typing = typing.slice(0, -1); }
    else if (typing.length < 12) { typing += name; }
  } else if (name === "C") { fen = 0; }
  else if (name === "back") { fen = Math.floor(fen / 10); }
  else if (fen < 10000000000) { fen = fen * 10 + Number(name); }
  show();
}

function outcome(text, mood) {
  var element = document.getElementById("outcome");
  element.textContent = text;
  element.className = mood || "";
}

function receipt(lines) {
  document.getElementById("receipt").textContent = (lines || []).join("\n");
}

function charge() {
  if (typing === null) { action = "/keypad/sale"; }
  run();
}

function topup() {
  action = "/keypad/load";
  run();
}

function run() {
  if (typing !== null) {  // the PIN is typed: go on with it
    pin = typing;
    typing = null;
  }
  if (busy || fen === 0) { return; }
  if (pin === null) {  // the keys type the PIN first
    typing = "";
    show();
    return;
  }
  busy = true;
  show();
  outcome("");
  receipt([]);
  fetch(action, {method: "POST", headers: {"Content-Type": "application/json"},
                         body: JSON.stringify({amount: fen, pin: pin})})
    .then(function (answer) { return answer.json().then(function (body) { return [answer.status, body]; }); })
    .then(function (result) {
      var status = result[0], body = result[1];
      if (status === 200) {
        var approved = body.outcome === "Approved";
        var words = action === "/keypad/load" ? body.message : "Approved " + yuan(body.charged);
        outcome(approved ? words : body.message, approved ? "ok" : "error");
        receipt(body.receipt);
        fen = 0;
      } else {
        if (status === 403 || status === 429) { pin = null; }
        outcome(body.error || ("HTTP " + status), "error");
      }
    })
    .catch(function () { outcome("The terminal did not answer", "error"); })
    .then(function () { busy = false; show(); });
}

function lastReceipt() {
  fetch("/status").then(function (answer) { return answer.json(); }).then(function (status) {
    var last = status.last_sale;
    outcome(last ? last.message : "No sale yet", last && last.outcome === "Approved" ? "ok" : "");
    receipt(last ? last.receipt : []);
  });
}

function follow() {
  var events = new EventSource("/display/events");
  events.onmessage = function (message) {
    var view = JSON.parse(message.data);
    document.getElementById("state").textContent = view.headline + (view.detail ? " — " + view.detail : "");
  };
  events.onerror = function () {
    document.getElementById("state").textContent = "Terminal not connected";
    if (events.readyState === EventSource.CLOSED) { events.close(); window.setTimeout(follow, 3000); }
  };
}

document.querySelectorAll("#keys button").forEach(function (button) {
  button.addEventListener("click", function () { key(button.dataset.key); });
});
document.getElementById("charge").addEventListener("click", charge);
document.getElementById("topup").addEventListener("click", topup);
document.getElementById("receipt-button").addEventListener("click", lastReceipt);
show();
follow();

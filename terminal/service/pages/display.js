// The customer display: follows the terminal's /display/events stream (Server-Sent Events). Every state it is
// shown is kept in window.shown, in order, for whoever tests the page.
"use strict";
window.shown = [];

function render(view) {
  document.body.className = view.mood + " state-" + view.state;
  document.getElementById("headline").textContent = view.headline;
  document.getElementById("detail").textContent = view.detail;
  document.getElementById("amount").textContent = view.amount;
  document.querySelectorAll("#lights .light").forEach(function (light, index) {
    light.classList.toggle("on", Boolean(view.lights[index]));
  });
  var last = window.shown[window.shown.length - 1];
  var entry = view.state + ": " + view.headline + (view.detail ? " — " + view.detail : "");
  if (last !== entry) {
    window.shown.push(entry);
  }
}

function connect() {
  var link = document.getElementById("link");
  var events = new EventSource("/display/events");
  events.onopen = function () { link.hidden = true; };
  events.onmessage = function (message) { render(JSON.parse(message.data)); };
  events.onerror = function () {
    link.hidden = false;
    if (events.readyState === EventSource.CLOSED) {  // refused (e.g. 503): EventSource gives up, this page does not
      events.close();
      window.setTimeout(connect, 3000);
    }  // otherwise EventSource connects again by itself
  };
}

connect();

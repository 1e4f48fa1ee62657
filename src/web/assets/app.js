// boardlab's status page: keeps the tables current from /events
// (server-sent events: the whole lab first, then what changed). Every
// value is set as text, never as markup.
"use strict";
(function () {
  var offset = 0; // labd's clock minus this browser's, in ms
  var expires = {}; // board -> lease end (labd's Unix ms)

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function left(ms) {
    if (ms == null) return "";
    var s = Math.floor((ms - (Date.now() + offset)) / 1000);
    if (s <= 0) return "ended";
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d > 0) return d + "d" + h + "h left";
    if (h > 0) return h + "h" + (m < 10 ? "0" : "") + m + "m left";
    if (m > 0) return m + "m left";
    return s + "s left";
  }

  function row(b) {
    var tr = document.createElement("tr");
    tr.dataset.board = b.board;
    cell(tr, b.board, "board");
    cell(tr, b.class);
    cell(tr, b.state, "state s-" + b.state);
    cell(tr, b.user);
    cell(tr, b.power, "power p-" + b.power);
    var l = cell(tr, left(b.expires_ms), "left");
    l.title = b.expires_at || "";
    cell(tr, b.console);
    cell(tr, b.fault, "fault");
    cell(tr, b.health, "health");
    expires[b.board] = b.expires_ms;
    return tr;
  }

  function boards(list, all) {
    var body = document.querySelector("#boards tbody");
    if (all) {
      var fresh = document.createElement("tbody");
      list.forEach(function (b) { fresh.appendChild(row(b)); });
      body.replaceWith(fresh);
      expires = {};
      list.forEach(function (b) { expires[b.board] = b.expires_ms; });
      return;
    }
    list.forEach(function (b) {
      var tr = row(b);
      tr.className = "changed";
      var old = Array.prototype.find.call(body.rows, function (r) { return r.dataset.board === b.board; });
      if (old) old.replaceWith(tr); else body.appendChild(tr);
    });
  }

  function waiting(map) {
    var ul = document.getElementById("waiting");
    var fresh = document.createElement("ul");
    fresh.id = "waiting";
    Object.keys(map).forEach(function (c) {
      var li = document.createElement("li");
      li.dataset.class = c;
      li.appendChild(document.createTextNode(c + ": "));
      var b = document.createElement("b");
      b.textContent = String(map[c]);
      li.appendChild(b);
      fresh.appendChild(li);
    });
    ul.replaceWith(fresh);
  }

  function events(list) {
    var body = document.querySelector("#events tbody");
    var fresh = document.createElement("tbody");
    list.forEach(function (e) {
      var tr = document.createElement("tr");
      [e.at, e.kind, e.board, e.user, e.detail].forEach(function (v) { cell(tr, v); });
      fresh.appendChild(tr);
    });
    body.replaceWith(fresh);
  }

  function apply(msg, all) {
    offset = msg.now - Date.now();
    boards(msg.boards, all);
    if (msg.waiting) waiting(msg.waiting);
    if (msg.events) events(msg.events);
  }

  function tick() {
    var body = document.querySelector("#boards tbody");
    Array.prototype.forEach.call(body.rows, function (r) {
      var td = r.querySelector("td.left");
      if (td) td.textContent = left(expires[r.dataset.board]);
    });
  }

  function connect() {
    var live = document.getElementById("live");
    var es = new EventSource("/events");
    es.addEventListener("lab", function (ev) {
      apply(JSON.parse(ev.data), true);
      live.textContent = "live";
      live.className = "live";
      document.body.dataset.live = "1";
    });
    es.addEventListener("change", function (ev) { apply(JSON.parse(ev.data), false); });
    es.onerror = function () {
      // The browser reconnects by itself; the next `lab` brings it all.
      // Not after an answer other than the stream (labd's streams are
      // all taken: 503): then this page tries again itself, a little
      // later.
      live.textContent = "reconnecting";
      live.className = "live off";
      document.body.dataset.live = "0";
      if (es.readyState === EventSource.CLOSED) {
        setTimeout(connect, 5000 + Math.floor(Math.random() * 5000));
      }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    connect();
    setInterval(tick, 1000);
  });
})();

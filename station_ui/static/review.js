// Review screen: verdict by tap or key, undo within the window, zoom, live queue via server-sent events.
(function () {
  "use strict";
  var root = document.getElementById("review-root");
  if (!root) return;
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var itemBox = document.getElementById("item");
  var statusEl = document.getElementById("status");
  var undoBtn = document.getElementById("undo");
  var undoLeft = document.getElementById("undo-left");
  var countEl = document.getElementById("queue-count");
  var ageEl = document.getElementById("queue-age");
  var queueEl = document.getElementById("queue");
  var filters = { line: root.dataset.line, camera: root.dataset.camera };
  var undoUntil = 0, busy = false, mode = null;

  function currentId() { var a = itemBox.querySelector(".item"); return a ? a.dataset.id : null; }

  function setStats(s) {
    if (!s) return;
    countEl.textContent = s.count;
    queueEl.dataset.oldest = s.oldest_captured_at || "";
    ageEl.textContent = s.oldest_age;
  }

  function show(html) { itemBox.innerHTML = html; mode = null; }

  function choose(verdict) {
    if (!currentId()) return;
    mode = verdict;
    document.getElementById("choose").hidden = true;
    document.getElementById("kinds-real_fault").hidden = verdict !== "real_fault";
    document.getElementById("kinds-not_defect").hidden = verdict !== "not_defect";
  }

  function back() {
    mode = null;
    var c = document.getElementById("choose"); if (c) c.hidden = false;
    ["kinds-real_fault", "kinds-not_defect"].forEach(function (id) { var e = document.getElementById(id); if (e) e.hidden = true; });
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Accept": "application/json" },
      body: JSON.stringify(Object.assign({}, filters, body || {}))
    }).then(function (r) {
      if (r.status === 401) { window.location = "/login"; throw new Error("logged out"); }
      return r.json().then(function (j) { j._status = r.status; return j; });
    });
  }

  function send(verdict, kind) {
    var id = currentId();
    if (!id || busy) return;
    busy = true;
    post(root.dataset.verdictUrl, { review_id: id, verdict: verdict, kind: kind }).then(function (j) {
      if (j.html !== undefined) show(j.html);
      setStats(j.stats);
      if (j.ok) {
        statusEl.textContent = j.counted ? "Saved." : (j.state === "awaiting_confirm" ? "Saved: waits for a second reviewer." : "Saved: disagreement sent to an engineer.");
        undoUntil = Date.now() + parseFloat(root.dataset.undoS) * 1000;
        tickUndo();
      } else {
        statusEl.textContent = j.error || "Not saved.";
      }
    }).catch(function (e) { statusEl.textContent = "Not saved: " + e.message; })
      .finally(function () { busy = false; });
  }

  function undo() {
    if (Date.now() > undoUntil || busy) return;
    busy = true;
    post(root.dataset.undoUrl, {}).then(function (j) {
      if (j.ok) { show(j.html); statusEl.textContent = "Verdict undone."; undoUntil = 0; tickUndo(); }
      else statusEl.textContent = j.error || "Cannot undo.";
      setStats(j.stats);
    }).finally(function () { busy = false; });
  }

  function tickUndo() {
    var left = Math.ceil((undoUntil - Date.now()) / 1000);
    undoBtn.hidden = left <= 0;
    undoLeft.textContent = left > 0 ? "(" + left + " s)" : "";
  }

  function refresh() {
    var q = new URLSearchParams(filters).toString();
    // X-QC-Background: fetched because the queue changed, not because a person did anything, so it must
    // not keep an unattended screen logged in under the last reviewer's name.
    fetch(root.dataset.itemUrl + "?" + q, { credentials: "same-origin",
                                            headers: { "Accept": "application/json", "X-QC-Background": "1" } })
      .then(function (r) { return r.json(); })
      .then(function (j) { setStats(j.stats); if (!currentId() && j.id) show(j.html); });
  }

  function ageWords(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  // Local clock only: the age label and the undo countdown tick without asking the server.
  setInterval(function () {
    var o = parseFloat(queueEl.dataset.oldest);
    ageEl.textContent = isNaN(o) ? "-" : ageWords(Date.now() / 1000 - o);
    tickUndo();
  }, 1000);

  // Where the model looked: the retraining server's heat map, fetched when first asked for, laid over the frame.
  function toggleHeat() {
    var heat = document.getElementById("heat-img");
    if (!heat) return;
    if (heat.hidden && !heat.getAttribute("src")) {
      heat.onerror = function () {
        heat.hidden = true;
        heat.removeAttribute("src");
        statusEl.textContent = "No heat map: the retraining server could not draw it.";
      };
      heat.src = heat.dataset.src;
    }
    heat.hidden = !heat.hidden;
  }

  itemBox.addEventListener("click", function (ev) {
    var t = ev.target.closest("button");
    if (t) {
      if (t.id === "heat-toggle") { toggleHeat(); return; }
      if (t.classList.contains("back")) back();
      else if (t.classList.contains("kind") || t.classList.contains("quick")) send(t.dataset.verdict, t.dataset.kind);
      else if (t.classList.contains("verdict")) choose(t.dataset.verdict);
      return;
    }
    var img = ev.target.closest("#frame-img");
    if (img) zoomAt(img, ev);
  });
  undoBtn.addEventListener("click", undo);

  function zoomAt(img, ev) {
    var fig = document.getElementById("frame");
    if (ev && !fig.classList.contains("zoomed")) {
      var r = img.getBoundingClientRect();
      img.style.transformOrigin = ((ev.clientX - r.left) / r.width * 100) + "% " + ((ev.clientY - r.top) / r.height * 100) + "%";
      var heat = document.getElementById("heat-img");
      if (heat) heat.style.transformOrigin = img.style.transformOrigin;
    }
    fig.classList.toggle("zoomed");
  }

  document.addEventListener("keydown", function (ev) {
    if (ev.target.closest && ev.target.closest("input, select, textarea")) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    var k = ev.key;
    if (k === "f" || k === "F") choose("real_fault");
    else if (k === "n" || k === "N") choose("not_defect");
    else if (!mode && (k === "d" || k === "D")) send("not_defect", "");
    else if (k === "u" || k === "U") undo();
    else if (k === "z" || k === "Z") { var img = document.getElementById("frame-img"); if (img) zoomAt(img, null); }
    else if (k === "h" || k === "H") toggleHeat();
    else if (k === "Escape") back();
    else if (mode && (k === "Enter" || k === "0")) send(mode, "");
    else if (mode && /^[1-9]$/.test(k)) {
      var b = document.querySelectorAll("#kinds-" + mode + " button.kind[data-kind]:not(.plain)")[parseInt(k, 10) - 1];
      if (b) send(mode, b.dataset.kind);
    } else return;
    ev.preventDefault();
  });

  if (window.EventSource) {
    var es = new EventSource(root.dataset.eventsUrl);
    es.addEventListener("queue", refresh);
  }
})();

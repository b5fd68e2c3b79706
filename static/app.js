// The little the server cannot do: keep the live table bounded, show times in the reader's time
// zone, copy values, fold JSON, pick two events to compare, and keyboard shortcuts.
// No inline scripts or handlers anywhere (CSP script-src 'self'): everything is delegated here.
(function () {
  "use strict";

  function read(storage, key) {
    try { return window[storage].getItem(key); } catch (e) { return null; }
  }
  function write(storage, key, value) {
    try {
      if (value === null) window[storage].removeItem(key); else window[storage].setItem(key, value);
    } catch (e) { /* storage disabled: the choice lasts for this page only */ }
  }

  // ---- The live table -------------------------------------------------------------------

  // A reconnecting socket catches up from the page's first row, so a row can arrive twice.
  function trimRows() {
    var body = document.getElementById("rows");
    if (!body) return;
    var max = parseInt(body.getAttribute("data-max-rows") || "200", 10);
    var seen = {};
    var kept = 0;
    var rows = body.querySelectorAll("tr:not(.empty)");
    for (var i = 0; i < rows.length; i++) {
      var id = rows[i].id;
      if ((id && seen[id]) || kept >= max) { rows[i].remove(); continue; }
      if (id) seen[id] = true;
      kept++;
    }
  }

  // Only the latest update's rows are marked fresh: unmark the previous ones first.
  function unmarkFresh() {
    var fresh = document.querySelectorAll("#rows tr.fresh");
    for (var i = 0; i < fresh.length; i++) fresh[i].classList.remove("fresh");
  }

  // ---- Times: UTC (the default, as the server renders them) or the browser's time zone -----

  var TZ_KEY = "eventscope.timezone";
  var shownLocal = false; // whether the page's times are currently shown in local time

  function wantsLocal() { return read("localStorage", TZ_KEY) === "local"; }

  function pad(n, width) {
    var s = String(Math.abs(n));
    while (s.length < (width || 2)) s = "0" + s;
    return s;
  }
  function offsetText(date) {
    var minutes = -date.getTimezoneOffset();
    var sign = minutes >= 0 ? "+" : "-";
    minutes = Math.abs(minutes);
    return sign + pad(Math.floor(minutes / 60)) + ":" + pad(minutes % 60);
  }
  function wallDate(d, local) {
    return local
      ? pad(d.getFullYear(), 4) + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate())
      : pad(d.getUTCFullYear(), 4) + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }
  function wallClock(d, local) {
    return local
      ? pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds())
      : pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }

  // Every <time datetime> the server wrote (UTC text) in local time, or back. Rows that arrive
  // live are converted after each message; only times not yet converted are touched.
  function showTimes() {
    var local = wantsLocal();
    if (!local && !shownLocal) return;
    var times = document.querySelectorAll(local ? "time[datetime]:not([data-shown])" : "time[data-shown]");
    for (var i = 0; i < times.length; i++) {
      var t = times[i];
      if (!local) {
        t.textContent = t.getAttribute("data-utc");
        t.removeAttribute("data-shown");
        t.removeAttribute("title");
        continue;
      }
      var date = new Date(t.getAttribute("datetime"));
      if (isNaN(date.getTime())) continue;
      t.setAttribute("data-utc", t.textContent);
      var clock = wallClock(date, true) + "." + pad(date.getMilliseconds(), 3);
      t.textContent = t.getAttribute("data-fmt") === "clock"
        ? clock : wallDate(date, true) + "T" + clock + offsetText(date);
      t.title = t.getAttribute("datetime") + " (UTC)";
      t.setAttribute("data-shown", "local");
    }
    shownLocal = local;
  }

  function showZoneChoice() {
    var local = wantsLocal();
    var buttons = document.querySelectorAll(".tz-switch [data-tz]");
    for (var i = 0; i < buttons.length; i++) {
      var on = (buttons[i].getAttribute("data-tz") === "local") === local;
      buttons[i].setAttribute("aria-pressed", on ? "true" : "false");
    }
    var labels = document.querySelectorAll("[data-tz-label]");
    for (var j = 0; j < labels.length; j++) {
      labels[j].textContent = local ? "local (UTC" + offsetText(new Date()) + ")" : "UTC";
    }
  }

  // The jump-to-time box (datetime-local) holds wall time in the chosen zone; the server reads
  // a time without offset as UTC, so a local one is sent as UTC (see htmx:configRequest).
  var WALL = /^(\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.\d+)?)?$/;
  function parseWall(value, local) {
    var m = WALL.exec(value || "");
    if (!m) return null;
    var d = new Date(0);
    if (local) {
      d.setFullYear(+m[1], +m[2] - 1, +m[3]);
      d.setHours(+m[4], +m[5], +(m[6] || 0), 0);
    } else {
      d.setUTCFullYear(+m[1], +m[2] - 1, +m[3]);
      d.setUTCHours(+m[4], +m[5], +(m[6] || 0), 0);
    }
    return isNaN(d.getTime()) ? null : d;
  }
  function convertJump(fromLocal, toLocal) {
    var input = document.getElementById("jump-at");
    if (!input || !input.value || fromLocal === toLocal) return;
    var d = parseWall(input.value, fromLocal);
    if (d) input.value = wallDate(d, toLocal) + "T" + wallClock(d, toLocal);
  }

  function chooseZone(zone) {
    var wasLocal = wantsLocal();
    write("localStorage", TZ_KEY, zone === "local" ? "local" : "utc");
    convertJump(wasLocal, wantsLocal());
    showZoneChoice();
    showTimes();
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var data = event.detail && event.detail.formData;
    if (!data || !wantsLocal() || typeof data.get !== "function") return;
    var at = data.get("at");
    var d = typeof at === "string" ? parseWall(at, true) : null;
    if (d) data.set("at", d.toISOString());
  });

  // ---- Copy buttons ---------------------------------------------------------------------

  function legacyCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    return ok;
  }
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () {
        if (!legacyCopy(text)) throw new Error("copy refused");
      });
    }
    return legacyCopy(text) ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  // A body is not in the page whole: it is fetched (raw bytes for operators, the masked text
  // of the API for viewers).
  function fetchText(button) {
    var field = button.getAttribute("data-copy-field");
    return fetch(button.getAttribute("data-copy-url"), { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        if (!field) return response.arrayBuffer().then(function (b) { return new TextDecoder("utf-8").decode(b); });
        return response.json().then(function (data) { return data[field] == null ? "" : String(data[field]); });
      });
  }
  function copyFrom(button) {
    if (button.hasAttribute("data-copy")) {
      var value;
      try { value = JSON.parse(button.getAttribute("data-copy")); } catch (e) { return Promise.reject(e); }
      return copyText(String(value));
    }
    // A ClipboardItem takes the pending text, so the click still counts as the user's gesture.
    if (navigator.clipboard && navigator.clipboard.write && window.ClipboardItem && window.isSecureContext) {
      var blob = fetchText(button).then(function (t) { return new Blob([t], { type: "text/plain" }); });
      return navigator.clipboard.write([new window.ClipboardItem({ "text/plain": blob })])
        .catch(function () { return fetchText(button).then(copyText); });
    }
    return fetchText(button).then(copyText);
  }
  function copied(button, ok) {
    button.classList.remove("done", "failed");
    button.classList.add(ok ? "done" : "failed");
    var note = document.getElementById("copy-status");
    if (!note) {
      note = document.createElement("span");
      note.id = "copy-status";
      note.className = "offscreen";
      note.setAttribute("role", "status");
      document.body.appendChild(note);
    }
    note.textContent = ok ? "Copied" : "Could not copy";
    window.setTimeout(function () { button.classList.remove("done", "failed"); }, 1500);
  }

  // ---- Foldable JSON --------------------------------------------------------------------

  function fold(container, folded) {
    container.classList.toggle("folded", folded);
    var toggle = container.firstElementChild;
    if (toggle && toggle.classList.contains("jf")) labelToggle(toggle);
  }
  function labelToggle(toggle) {
    var folded = toggle.parentNode.classList.contains("folded");
    toggle.setAttribute("aria-expanded", folded ? "false" : "true");
    toggle.setAttribute("aria-label", folded ? "unfold" : "fold");
  }
  function foldAll(button) {
    var section = button.closest("section");
    var pre = section && section.querySelector("pre.body");
    if (!pre) return;
    var close = button.getAttribute("data-fold") === "close";
    var containers = pre.querySelectorAll(close ? ".jc .jc:not(.folded)" : ".jc.folded");
    for (var i = 0; i < containers.length; i++) containers[i].classList.toggle("folded", close);
  }

  // ---- Picking two events to compare ------------------------------------------------------

  var PICK_KEY = "eventscope.compare";
  function picks() {
    var raw = read("sessionStorage", PICK_KEY) || "";
    return raw.split(",").filter(function (x) { return /^[0-9]{1,19}$/.test(x); }).slice(-2);
  }
  function togglePick(id) {
    var list = picks();
    var at = list.indexOf(id);
    if (at >= 0) list.splice(at, 1); else list.push(id);
    write("sessionStorage", PICK_KEY, list.length ? list.slice(-2).join(",") : null);
    showPicks();
  }
  function showPicks() {
    var list = picks();
    var buttons = document.querySelectorAll("[data-pick]");
    for (var i = 0; i < buttons.length; i++) {
      var on = list.indexOf(buttons[i].getAttribute("data-pick")) >= 0;
      buttons[i].setAttribute("aria-pressed", on ? "true" : "false");
      var row = buttons[i].closest("tr");
      if (row) row.classList.toggle("picked", on);
    }
    var bar = document.getElementById("compare-bar");
    if (!list.length) { if (bar) bar.remove(); return; }
    if (!bar) {
      bar = document.createElement("div");
      bar.id = "compare-bar";
      bar.className = "compare-bar";
      bar.setAttribute("role", "status");
      var text = document.createElement("span");
      var go = document.createElement("a");
      go.className = "button";
      go.textContent = "Compare";
      var clear = document.createElement("button");
      clear.type = "button";
      clear.className = "link";
      clear.setAttribute("data-pick-clear", "");
      clear.textContent = "Clear";
      bar.append(text, go, clear);
      document.body.appendChild(bar);
    }
    var ids = list.slice().sort(function (a, b) { return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0); });
    bar.firstChild.textContent = ids.length === 2
      ? "Picked #" + ids[0] + " and #" + ids[1]
      : "Picked #" + ids[0] + " — pick another event to compare";
    var link = bar.querySelector("a");
    link.hidden = ids.length !== 2;
    if (ids.length === 2) link.href = "/compare?a=" + ids[0] + "&b=" + ids[1];
  }

  // ---- Keyboard ------------------------------------------------------------------------

  var KEYS = [
    ["/", "search: focus the filter"],
    ["j  k", "select the next / previous row"],
    ["Enter", "open the selected event"],
    ["x", "pick the selected event to compare"],
    ["p", "pause or resume the live view"],
    ["←  →", "aggregate page: the previous / next step"],
    ["?", "show or hide these keys"],
    ["Esc", "close this, clear the selection, leave a field"]
  ];
  var selected = null; // the selected row's element id

  function timelineRows() { return document.querySelectorAll("#rows tr[id]"); }
  function selectedRow() {
    var row = selected ? document.getElementById(selected) : null;
    return row && row.closest("#rows") ? row : null;
  }
  function selectRow(row) {
    var old = selectedRow();
    if (old) { old.classList.remove("sel"); old.removeAttribute("aria-selected"); }
    selected = row ? row.id : null;
    if (!row) return;
    row.classList.add("sel");
    row.setAttribute("aria-selected", "true");
    row.scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    var rows = timelineRows();
    if (!rows.length) return false;
    // Moving through rows takes the keyboard from a clicked button or link: Enter then opens
    // the selected row instead of pressing that button again.
    var focused = document.activeElement;
    if (focused && focused !== document.body && focused.closest("a, button")) focused.blur();
    var index = Array.prototype.indexOf.call(rows, selectedRow());
    var next = index < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, index + step));
    selectRow(rows[next]);
    return true;
  }
  function toggleHelp(show) {
    var box = document.getElementById("keys-help");
    if (!box) {
      if (show === false) return false;
      box = document.createElement("div");
      box.id = "keys-help";
      box.className = "keys-help";
      box.setAttribute("role", "dialog");
      box.setAttribute("aria-label", "Keyboard shortcuts");
      var title = document.createElement("h2");
      title.textContent = "Keyboard shortcuts";
      var list = document.createElement("dl");
      KEYS.forEach(function (pair) {
        var dt = document.createElement("dt");
        pair[0].split("  ").forEach(function (k) {
          var kbd = document.createElement("kbd");
          kbd.textContent = k;
          dt.append(kbd, " ");
        });
        var dd = document.createElement("dd");
        dd.textContent = pair[1];
        list.append(dt, dd);
      });
      var close = document.createElement("button");
      close.type = "button";
      close.setAttribute("data-help-close", "");
      close.textContent = "Close";
      box.append(title, list, close);
      box.hidden = true;
      document.body.appendChild(box);
    }
    var open = show === undefined ? box.hidden : show;
    if (open === !box.hidden) return false;
    box.hidden = !open;
    return true;
  }
  // The aggregate page's stepper: ← and → follow its previous / next links (htmx swaps the
  // step in and pushes its URL).
  function step(which) {
    var link = document.querySelector('#aggregate-view [data-step="' + which + '"]');
    if (!link) return false;
    link.click();
    return true;
  }
  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (typing(target)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    var handled = false;
    switch (event.key) {
      case "/": {
        var search = document.getElementById("filter-q");
        if (search) { search.focus(); search.select(); handled = true; }
        break;
      }
      case "j": handled = move(1); break;
      case "k": handled = move(-1); break;
      case "Enter": {
        if (target && target !== document.body && target.closest("a, button, summary, [tabindex]")) return;
        var row = selectedRow();
        var link = row && row.querySelector("td.t a");
        if (link) { window.location.assign(link.href); handled = true; }
        break;
      }
      case "x": {
        var picked = selectedRow();
        var pick = picked && picked.querySelector("[data-pick]");
        if (pick) { togglePick(pick.getAttribute("data-pick")); handled = true; }
        break;
      }
      case "p": {
        var toggle = document.getElementById("toggle-live");
        if (toggle) { toggle.click(); handled = true; }
        break;
      }
      case "ArrowLeft": handled = step("prev"); break;
      case "ArrowRight": handled = step("next"); break;
      case "?": handled = toggleHelp(); break;
      case "Escape":
        handled = toggleHelp(false);
        if (!handled && selectedRow()) { selectRow(null); handled = true; }
        break;
      default: return;
    }
    if (handled) event.preventDefault();
  });

  // ---- Clicks (delegated: rows arrive live, and no inline handlers are allowed) -----------

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    var hit;
    if ((hit = target.closest("button.jf"))) { fold(hit.parentNode, !hit.parentNode.classList.contains("folded")); return; }
    if ((hit = target.closest("[data-fold]"))) { foldAll(hit); return; }
    if ((hit = target.closest("button.copy"))) {
      var button = hit;
      copyFrom(button).then(function () { copied(button, true); }, function () { copied(button, false); });
      return;
    }
    if ((hit = target.closest(".tz-switch [data-tz]"))) { chooseZone(hit.getAttribute("data-tz")); return; }
    if ((hit = target.closest("[data-pick]"))) { togglePick(hit.getAttribute("data-pick")); return; }
    if (target.closest("[data-pick-clear]")) { write("sessionStorage", PICK_KEY, null); showPicks(); return; }
    if (target.closest("[data-help-close]")) { toggleHelp(false); return; }
  });

  // The aggregate page's slider submits its (htmx-boosted) form when moved.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLInputElement && target.id === "step-slider" && target.form) {
      target.form.requestSubmit();
    }
  });

  document.addEventListener("focusin", function (event) {
    var target = event.target;
    if (target instanceof Element && target.classList.contains("jf")) labelToggle(target);
  });

  // ---- After every swap: live rows, a filtered timeline ------------------------------------

  function refresh() {
    showTimes();
    showPicks();
    var row = selectedRow();
    if (selected && !row) selected = null;
  }
  // ---- An aggregate's page follows its new events ----------------------------------------
  // Its socket delivers the aggregate's new rows; each burst refreshes the step shown (the
  // current state moves on, a pinned version gains later steps), one request at a time.

  var aggregateChanged = false;
  var refreshing = false;
  var refreshAgain = false;
  function refreshAggregate() {
    var view = document.getElementById("aggregate-view");
    var url = view && view.getAttribute("data-refresh-url");
    if (!url || !window.htmx) return;
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    var done = function () {
      refreshing = false;
      if (refreshAgain) { refreshAgain = false; refreshAggregate(); }
    };
    window.htmx.ajax("GET", url, { target: "#aggregate-view", swap: "outerHTML" }).then(done, done);
  }
  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    var message = event.detail && event.detail.message;
    if (typeof message === "string" && message.indexOf("afterbegin:#rows") !== -1) aggregateChanged = true;
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (!aggregateChanged) return;
    aggregateChanged = false;
    refreshAggregate();
  });

  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    var message = event.detail && event.detail.message;
    if (typeof message === "string" && message.indexOf("afterbegin:#rows") !== -1) unmarkFresh();
  });
  document.addEventListener("htmx:wsAfterMessage", function () { trimRows(); refresh(); });
  document.addEventListener("htmx:afterSettle", refresh);

  convertJump(false, wantsLocal());
  showZoneChoice();
  refresh();
})();

// The little the server cannot do: keep the live table bounded, and a keyboard shortcut.
(function () {
  "use strict";

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

  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    var message = event.detail && event.detail.message;
    if (typeof message === "string" && message.indexOf("afterbegin:#rows") !== -1) unmarkFresh();
  });
  document.addEventListener("htmx:wsAfterMessage", trimRows);

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    if (event.key === "/") {
      var search = document.getElementById("filter-q");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
      return;
    }
    if (event.key !== "p") return;
    var toggle = document.getElementById("toggle-live");
    if (toggle) { event.preventDefault(); toggle.click(); }
  });
})();

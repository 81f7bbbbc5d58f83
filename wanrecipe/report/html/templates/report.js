(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent || "{}");
  document.documentElement.setAttribute("data-report-kind", data.kind || "run");
  var filter = document.getElementById("filter");
  if (filter) {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-filter]"));
    var count = document.getElementById("shown-count");
    var apply = function () {
      var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      rows.forEach(function (row) {
        var text = row.getAttribute("data-filter");
        var hit = words.every(function (w) { return text.indexOf(w) !== -1; });
        row.hidden = !hit;
        if (hit) { shown += 1; }
      });
      if (count) { count.textContent = String(shown); }
    };
    filter.addEventListener("input", apply);
    apply();
  }
  var box = document.getElementById("lightbox");
  if (!box) { return; }
  var caption = box.querySelector("p");
  var big = null;
  var all = Array.prototype.slice.call(document.querySelectorAll("a.zoom"));
  var links = all;
  var at = -1;
  var show = function (i) {
    at = (i + links.length) % links.length;
    var link = links[at];
    if (!big) {
      big = document.createElement("img");
      big.alt = "full-size image";
      box.insertBefore(big, caption);
    }
    big.src = link.getAttribute("href");
    caption.textContent = link.getAttribute("data-caption") || link.getAttribute("href");
    box.classList.add("open");
    box.focus();
  };
  var close = function () {
    box.classList.remove("open");
    if (big) { box.removeChild(big); big = null; }
    at = -1;
  };
  all.forEach(function (link) {
    link.addEventListener("click", function (ev) {
      if (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) { return; }
      ev.preventDefault();
      // The arrows step through what is shown: rows the filter hid are left out.
      links = all.filter(function (l) { return l.offsetParent !== null; });
      show(links.indexOf(link));
    });
  });
  box.addEventListener("click", close);
  document.addEventListener("keydown", function (ev) {
    if (at < 0) { return; }
    if (ev.key === "Escape") { close(); }
    else if (ev.key === "ArrowRight") { show(at + 1); }
    else if (ev.key === "ArrowLeft") { show(at - 1); }
    else { return; }
    ev.preventDefault();
  });
}());

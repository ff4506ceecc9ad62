// The search page's few behaviours: the test-query picker, sorting the compare table, the progress of a
// run still writing its folder. Nothing here builds HTML from text: it moves existing rows and sets text.
(function () {
  const picker = document.getElementById("picker");
  if (picker) {
    picker.addEventListener("change", function () {
      if (picker.value) { document.getElementById("q").value = picker.value; picker.form.submit(); }
    });
  }
  const table = document.querySelector("table.sortable");
  if (table) {
    table.querySelectorAll("th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        const body = table.tBodies[0];
        const number = th.dataset.type === "number";
        const down = th.dataset.order !== "desc";
        table.querySelectorAll("th").forEach(function (h) { delete h.dataset.order; });
        th.dataset.order = down ? "desc" : "asc";
        const rows = Array.from(body.rows);
        rows.sort(function (a, b) {
          const x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
          if (number) {
            if (x === "") return 1; if (y === "") return -1;
            return down ? parseFloat(y) - parseFloat(x) : parseFloat(x) - parseFloat(y);
          }
          return down ? y.localeCompare(x) : x.localeCompare(y);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  const shown = document.getElementById("progress");
  function poll() {
    fetch("progress.json").then(function (r) { return r.json(); }).then(function (p) {
      if (p && p.running) {
        const age = Math.round(Date.now() / 1000 - p.updated);
        shown.hidden = false;
        shown.textContent = "siamese run: " + (p.message || p.stage || "") + " (" + age + " s ago)";
        setTimeout(poll, 2000);
      } else if (p && p.running === false && !shown.hidden) {
        shown.textContent = "the run finished: reload for its figures";
      }
    }).catch(function () {});
  }
  poll();
})();

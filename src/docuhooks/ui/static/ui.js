// Copy buttons: <button data-copy="ELEMENT_ID"> copies that input's value (and announces
// its data-copied text, if any). Served as a file
// because the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  function announce(button, text) {
    var status = document.getElementById(button.getAttribute("aria-describedby") || "");
    if (status) { status.textContent = text; }
  }

  async function copy(button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) { return; }
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (e) {
      // No clipboard API (an insecure origin, or permission refused): select the text so
      // the administrator can copy it by hand.
      field.focus();
      field.select();
      announce(button, "Selected: press Ctrl+C (⌘C on a Mac) to copy.");
      return;
    }
    button.textContent = "Copied";
    announce(button, button.getAttribute("data-copied") || "The secret is on the clipboard.");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (button) { copy(button); }
  });
})();

// A row added in place (htmx): the keyboard moves on to its first field, not back to the top.
(function () {
  "use strict";
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    if (!target || target.id !== "variable-rows") { return; }
    var rows = target.querySelectorAll(".variable-row");
    var last = rows[rows.length - 1];
    var field = last && last.querySelector("input, select, textarea");
    if (field) { field.focus(); }
  });
})();

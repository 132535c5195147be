// The work item and interview pages: progress while services are asked, focus moved to the
// result of an action, and the interview's own URL after opening it. Served as a file
// because the Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  function focusTarget(root) {
    var holder = root && root.closest ? (root.matches("[data-focus]") ? root : root.querySelector("[data-focus]")) : null;
    if (!holder) { holder = document.querySelector("[data-focus]"); }
    if (!holder) { return; }
    var target = document.getElementById(holder.getAttribute("data-focus"));
    holder.removeAttribute("data-focus");
    if (!target) { return; }
    if (target.tabIndex < 0 && !target.hasAttribute("tabindex")) { target.setAttribute("tabindex", "-1"); }
    target.focus();
  }

  function progress(text, near) {
    var scope = (near && near.closest("form")) || document;
    var region = scope.querySelector("[data-progress-text]") || document.querySelector("[data-progress-text]");
    if (region) { region.textContent = text; }
  }

  // Field messages arrive out of band after a save: mark their fields to match, in words
  // and for assistive technology (aria-invalid), not by colour alone.
  function syncInvalid() {
    document.querySelectorAll("#interview-form .field").forEach(function (field) {
      var error = field.querySelector(":scope > .field-error");
      if (!error) { return; }
      var bad = (error.getAttribute("data-invalid") || "").split(" ").filter(Boolean);
      field.classList.toggle("invalid", error.textContent.trim() !== "");
      field.querySelectorAll("input, select, textarea").forEach(function (input) {
        if (bad.indexOf(input.id) >= 0) {
          input.setAttribute("aria-invalid", "true");
        } else {
          input.removeAttribute("aria-invalid");
        }
      });
    });
  }

  // "filled in by" marks: the server marks the answers a webhook supplied in the step it
  // answers; this tab keeps them (sessionStorage) across steps and reloads until the person
  // changes that answer, or an answer file may have replaced it.
  function marksKey() {
    var form = document.getElementById("interview-form");
    return form ? "docuhooks-marks:" + form.getAttribute("action") : null;
  }

  function readMarks(key) {
    try { return JSON.parse(window.sessionStorage.getItem(key) || "{}"); } catch (e) { return {}; }
  }

  function writeMarks(key, marks) {
    try { window.sessionStorage.setItem(key, JSON.stringify(marks)); } catch (e) { /* private mode */ }
  }

  function showMark(slot, name) {
    slot.textContent = name ? "filled in by " + name : "";
    if (name) { slot.className = "source"; } else { slot.removeAttribute("class"); }
  }

  function syncMarks() {
    var key = marksKey();
    if (!key) { return; }
    var body = document.getElementById("interview-body");
    var marks = body && body.hasAttribute("data-clear-marks") ? {} : readMarks(key);
    document.querySelectorAll("#interview-form [data-source]").forEach(function (slot) {
      var name = slot.getAttribute("data-source");
      if (name) {
        marks[slot.id] = name;
      } else if (marks[slot.id]) {
        showMark(slot, marks[slot.id]);
      }
    });
    writeMarks(key, marks);
  }

  function dropMark(event) {
    if (!event.isTrusted || event.target.closest("[data-goto]")) { return; }
    var field = event.target.closest("#interview-form .field");
    var slot = field && field.querySelector("[data-source]");
    var key = marksKey();
    if (!slot || !key) { return; }
    var marks = readMarks(key);
    delete marks[slot.id];
    writeMarks(key, marks);
    slot.setAttribute("data-source", "");
    showMark(slot, "");
  }

  document.addEventListener("input", dropMark);
  document.addEventListener("change", dropMark);

  // A row number typed in a long repeat's "Row" box: Enter shows that row (the form's own
  // Enter would only save).
  document.addEventListener("keydown", function (event) {
    var box = event.key === "Enter" && event.target.closest && event.target.closest("[data-goto]");
    var button = box && document.getElementById(box.getAttribute("data-goto"));
    if (button) {
      event.preventDefault();
      button.click();
    }
  });

  document.addEventListener("click", function (event) {
    var rows = event.target.closest("#interview-form button[value^='add:'], #interview-form button[value^='remove:']");
    if (rows) { dropMark({ isTrusted: event.isTrusted, target: rows }); }
    var button = event.target.closest("button[data-progress]");
    if (button) { progress(button.getAttribute("data-progress"), button); }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches("form[data-progress]")) {
      progress(form.getAttribute("data-progress"), null);
      form.setAttribute("aria-busy", "true");
    }
  });

  // Typing not yet saved (the field not left yet) when the page goes away: send it anyway,
  // as a plain post of the form, which the browser delivers after the page is gone.
  var unsaved = false;
  document.addEventListener("input", function (event) {
    if (event.target.closest("#interview-form")) { unsaved = true; }
  });

  window.addEventListener("pagehide", function () {
    var form = document.getElementById("interview-form");
    if (form && unsaved && navigator.sendBeacon) {
      unsaved = false;
      navigator.sendBeacon(form.getAttribute("action"), new FormData(form));
    }
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = document.getElementById("interview-form");
    if (form) { form.setAttribute("aria-busy", "true"); }
    if (event.detail.elt === form) { unsaved = false; }
  });

  document.addEventListener("htmx:afterRequest", function () {
    var form = document.getElementById("interview-form");
    if (form) { form.removeAttribute("aria-busy"); }
    progress("", null);
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    syncInvalid();
    syncMarks();
    focusTarget(event.detail.elt);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var title = document.querySelector("[data-url]");
    if (title && window.location.pathname !== title.getAttribute("data-url")) {
      // Opened by a post: a reload shows the saved interview rather than opening it again.
      window.history.replaceState(null, "", title.getAttribute("data-url"));
    }
    syncMarks();
    focusTarget(document.body);
  });
})();

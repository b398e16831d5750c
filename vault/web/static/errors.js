// After a form comes back with errors, the focus goes to the summary of the errors (right after the
// page's title), so that a screen reader reads it and the keyboard starts from there. Without this
// script the summary is still the first thing after the title.
(function () {
  "use strict";
  var summary = document.querySelector(".error-summary");
  if (summary) { summary.focus(); }
})();

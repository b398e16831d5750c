// Progress bar for "Ajouter un justificatif". The form works without this script (plain POST).
// Its sentences come from the page (the form's data-sending and data-failed), in the page's language.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) { return; }
  var bar = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  form.addEventListener("submit", function (event) {
    if (!form.file.files.length) { return; }
    event.preventDefault();
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    bar.hidden = false;
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        var percent = Math.round((e.loaded / e.total) * 100);
        bar.value = percent;
        status.textContent = form.getAttribute("data-sending") + " " + percent + " %";
      }
    });
    xhr.addEventListener("load", function () {
      // The server answers as for the plain form: a redirect (followed here) to the page that says
      // the document was added, or the form again with what to correct. Either is shown as is, at
      // its own address; the notice was given once, a reload does not show it again.
      if (xhr.responseURL && xhr.responseURL !== form.action && window.history && window.history.replaceState) {
        window.history.replaceState(null, "", xhr.responseURL);
      }
      document.open();
      document.write(xhr.responseText);
      document.close();
    });
    xhr.addEventListener("error", function () {
      status.textContent = form.getAttribute("data-failed");
      bar.hidden = true;
    });
    xhr.send(new FormData(form));
  });
})();

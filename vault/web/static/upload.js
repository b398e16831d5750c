// Progress bar for "Ajouter un justificatif". The form works without this script (plain POST).
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
        status.textContent = "Envoi : " + percent + " %";
      }
    });
    xhr.addEventListener("load", function () {
      // The server answers as for the plain form: a redirect (followed by the browser) on success,
      // or a page explaining the problem, shown as is.
      if (xhr.responseURL && xhr.responseURL.indexOf("notice=") !== -1) {
        window.location.assign(xhr.responseURL);
      } else {
        document.open();
        document.write(xhr.responseText);
        document.close();
      }
    });
    xhr.addEventListener("error", function () {
      status.textContent = "L'envoi a échoué. Vérifiez votre connexion et recommencez.";
      bar.hidden = true;
    });
    xhr.send(new FormData(form));
  });
})();

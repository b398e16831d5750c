// Passkeys (WebAuthn): logging in with one (login page) and adding one ("Mon compte").
// The only part of the site that needs JavaScript: without it the password login works as before
// and the pages say that passkeys need it. Every message shown here comes from the page (its data-
// attributes or the server's answer), in the page's language.
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = window.atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return window.btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      var descriptor = { type: item.type, id: toBytes(item.id) };
      if (item.transports) { descriptor.transports = item.transports; }
      return descriptor;
    });
  }

  // The server's options (JSON, base64url) as the WebAuthn API takes them (binary).
  function creationOptions(json) {
    var options = JSON.parse(JSON.stringify(json));
    options.challenge = toBytes(json.challenge);
    options.user.id = toBytes(json.user.id);
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    var options = JSON.parse(JSON.stringify(json));
    options.challenge = toBytes(json.challenge);
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  // The authenticator's answer as JSON (WebAuthn Level 3's RegistrationResponseJSON and
  // AuthenticationResponseJSON), which the server reads.
  function credentialJson(credential) {
    var response = credential.response;
    var json = {
      id: credential.id, rawId: toText(credential.rawId), type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: toText(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      json.response.userHandle = response.userHandle ? toText(response.userHandle) : null;
    }
    return json;
  }

  function csrfToken() {
    var field = document.querySelector('input[name="csrf_token"]');
    return field ? field.value : "";
  }

  // POST JSON; resolves with {ok, data}; the server's refusals carry {error, fields?}.
  function post(url, body) {
    return window.fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, data: data };
      });
    });
  }

  function refused(answer) {
    if (!answer.ok) { throw answer; }
    return answer.data;
  }

  // What to tell the citizen: the server's message, or ours for the browser's own errors.
  function explain(holder, problem) {
    if (problem && problem.data && problem.data.error) { return problem.data.error; }
    var name = problem && problem.name;
    if (name === "InvalidStateError" && holder.dataset.excluded) { return holder.dataset.excluded; }
    if (name === "NotAllowedError" || name === "AbortError" || name === "InvalidStateError") {
      return holder.dataset.cancelled;
    }
    return holder.dataset.failed;
  }

  var supported = !!(window.PublicKeyCredential && navigator.credentials && window.fetch);

  // ---- login page (and the confirmation page, with its own addresses) ------------------------
  var login = document.getElementById("passkey-login");
  if (login) {
    var button = document.getElementById("passkey-login-button");
    var status = document.getElementById("passkey-status");
    if (!supported) {
      status.textContent = login.dataset.unsupported;
    } else {
      button.hidden = false;
      button.addEventListener("click", function () {
        var email = document.getElementById("email");
        var next = document.querySelector('input[name="next"]');
        button.disabled = true;
        status.textContent = login.dataset.working;
        post(login.dataset.options || "/login/passkey/options", {}).then(refused).then(function (options) {
          return navigator.credentials.get({ publicKey: requestOptions(options) });
        }).then(function (credential) {
          return post(login.dataset.action || "/login/passkey", {
            credential: credentialJson(credential), email: email ? email.value : "", next: next ? next.value : ""
          });
        }).then(refused).then(function (answer) {
          window.location.assign(answer.redirect);
        }).catch(function (problem) {
          button.disabled = false;
          status.textContent = explain(login, problem);
        });
      });
    }
  }

  // ---- Mon compte: adding a passkey ---------------------------------------------------------------
  var form = document.getElementById("passkey-add-form");
  if (form) {
    var summary = document.getElementById("passkey-add");
    var field = function (name) { return form.elements.namedItem(name); };

    var show = function (text, fields) {
      summary.textContent = "";
      var lead = document.createElement("p");
      lead.textContent = text;
      summary.appendChild(lead);
      ["name", "password", "otp"].forEach(function (name) {
        if (field(name)) { field(name).removeAttribute("aria-invalid"); }
      });
      if (fields) {
        var list = document.createElement("ul");
        Object.keys(fields).forEach(function (name) {
          var item = document.createElement("li");
          var link = document.createElement("a");
          link.href = "#" + name;
          link.textContent = fields[name];
          item.appendChild(link);
          list.appendChild(item);
          if (field(name)) { field(name).setAttribute("aria-invalid", "true"); }
        });
        summary.appendChild(list);
      }
      summary.hidden = false;
    };

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!supported) { show(summary.dataset.unsupported); return; }
      var submit = form.querySelector('button[type="submit"]');
      submit.disabled = true;
      post("/account/passkeys/options", {
        name: field("name").value, password: field("password").value, otp: field("otp") ? field("otp").value : ""
      }).then(refused).then(function (options) {
        field("password").value = "";
        if (field("otp")) { field("otp").value = ""; }
        return navigator.credentials.create({ publicKey: creationOptions(options) });
      }).then(function (credential) {
        return post("/account/passkeys", { credential: credentialJson(credential) });
      }).then(refused).then(function (answer) {
        window.location.assign(answer.redirect);
      }).catch(function (problem) {
        submit.disabled = false;
        var fields = problem && problem.data && problem.data.fields;
        show(fields ? summary.dataset.fields : explain(summary, problem), fields);
      });
    });
  }
})();

"""A FranceConnect v2 client library nobody here wrote (PyPI ``france-connect-py``), unmodified,
against an ``fc-v2`` app of the running server: discovery, login, the ID token and signed userinfo
checked with the server's keys, logout — as it does against FranceConnect v2."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import httpx
from france_connect.clients import FranceConnect

from tests.support import PASSWORD

CALLBACK, LOGGED_OUT = "https://demarches.ville.example.fr/fc/callback", "https://demarches.ville.example.fr/fc/bye"


def test_france_connect_py_discovers_logs_in_reads_userinfo_and_logs_out(live_server) -> None:
    app = json.loads(live_server.vault(
        "client", "create", "--name", "Démarches (FranceConnect v2)", "--profile", "fc-v2",
        "--redirect-uri", CALLBACK, "--post-logout-redirect-uri", LOGGED_OUT,
        "--scope", "openid identite_pivot email", "--json").stdout)
    live_server.vault("citizen", "create", "--email", "fcpy@example.org", "--given-name", "Angela Claire",
                      "--family-name", "Dubois", "--birthdate", "1962-08-24", "--gender", "female", "--birthplace",
                      "75107", "--birthcountry", "99100", "--password-stdin", "--verified", "--json",
                      stdin=f"{PASSWORD}\n")
    fc = FranceConnect(client_id=app["client_id"], client_secret=app["client_secret"],
                       scopes=["openid", "identite_pivot", "email"], login_callback_url=CALLBACK,
                       logout_callback_url=LOGGED_OUT, fc_base_url=live_server.url)

    configuration = fc.get_configuration()
    assert configuration["issuer"] == f"{live_server.url}/api/v2"
    assert configuration["authorization_endpoint"] == f"{live_server.url}/api/v2/authorize"

    url, nonce, state = fc.get_authentication_url()
    with httpx.Client(base_url=live_server.url) as browser:
        answer = browser.get(url)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), answer.text[:500]
        next_step = parse_qs(urlsplit(answer.headers["location"]).query)["next"][0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text).group(1)
        answer = browser.post("/login", data={"email": "fcpy@example.org", "password": PASSWORD, "csrf_token": token,
                                              "next": next_step})
        for _ in range(3):  # back to the request, then the consent page
            if answer.status_code == 303 and not answer.headers["location"].startswith(CALLBACK):
                answer = browser.get(answer.headers["location"])
            elif answer.status_code == 200 and 'name="decision"' in answer.text:
                action = re.search(r'action="(/authorize/continue/[^"]+)"', answer.text).group(1)
                answer = browser.post(action, data={"decision": "allow", "csrf_token": browser.cookies["csrf"]})
        callback = answer.headers["location"]
        assert callback.startswith(CALLBACK), callback
        result = parse_qs(urlsplit(callback).query)
        assert result["state"] == [state] and result["iss"] == [f"{live_server.url}/api/v2"]

        tokens, id_token = fc.get_id_token(result["code"][0])  # checked with /api/v2/jwks, aud, exp
        assert id_token["nonce"] == nonce and id_token["acr"] == "eidas1"
        assert id_token["iss"] == f"{live_server.url}/api/v2"
        user = fc.get_user_info(tokens["access_token"])  # a signed JWT, verified the same way
        assert user["given_name"] == "Angela Claire" and user["given_name_array"] == ["Angela", "Claire"]
        assert user["family_name"] == "Dubois" and user["birthplace"] == "75107" and user["email"] == "fcpy@example.org"
        assert user["sub"] == id_token["sub"]

        out = browser.get(fc.get_logout_url(tokens["id_token"], "bye42"))
        assert out.status_code == 303 and out.headers["location"] == f"{LOGGED_OUT}?state=bye42"
        assert browser.get("/account").status_code == 303  # logged out

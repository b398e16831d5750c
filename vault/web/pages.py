"""Page helpers shared by every HTML route: rendering, language, CSRF, form parsing, cookies."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, parse_qsl, urlsplit
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse, Response

from vault import geo
from vault.errors import VaultError
from vault.settings import Settings
from vault.translation import N_, Message
from vault.web.devices import device_label
from vault.web.i18n import LANGUAGES, load_catalogues, translations
from vault.web.state import app_settings

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
# ``{% trans %}`` blocks besides ``_("…")``. The translations are given per page in the context
# (``_``, ``gettext``, ``ngettext``), not installed on the shared environment: pages in both
# languages render at the same time in different threads.
TEMPLATES.env.add_extension("jinja2.ext.i18n")
load_catalogues()


def with_error_summary(content: str, errors: dict[str, str] | None, translate: Any) -> Markup:
    """A page's content with the summary of its form's ``errors`` (field id → message) put right
    after its ``h1`` (or first, for a page without one), one link per error to its field, in the
    order of the fields on the page (errors whose field is not on the page come last)."""
    content = Markup(content)  # noqa: S704  (the page content Jinja rendered, escaped already)
    if not errors:
        return content

    def position(field: str) -> int:
        found = content.find(f'id="{escape(field)}"')
        return found if found >= 0 else len(content)

    ordered = sorted(errors.items(), key=lambda item: position(item[0]))  # stable: ties keep their order
    items = Markup("").join(Markup('<li><a href="#{}">{}</a></li>').format(field, translate(text))
                            for field, text in ordered)
    summary = Markup(
        '<div class="error-summary" role="alert" aria-labelledby="error-summary-title" tabindex="-1">'
        '<h2 id="error-summary-title">{}</h2><ul>{}</ul></div>').format(translate(N_("Certains champs sont à corriger :")), items)
    end = content.find("</h1>")
    if end < 0:
        return summary + content
    end += len("</h1>")
    return Markup(content[:end]) + summary + Markup(content[end:])  # noqa: S704  (the same, cut in two)


TEMPLATES.env.filters["with_error_summary"] = with_error_summary

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 40
MAX_FIELD_CHARS = 1000
CSRF_FIELD = "csrf_token"


class PageError(VaultError):
    """Answer with a page saying ``message`` (French) and ``status``; nothing was changed."""

    def __init__(self, status: int, message: str, *, title: str = N_("Impossible de continuer")) -> None:
        super().__init__(message)
        self.status = status
        self.title = title


# ---- cookies -------------------------------------------------------------------------------------


def cookie_name(settings: Settings, base: str) -> str:
    # The __Host- prefix pins the cookie to this exact host, HTTPS, path / (no subdomain injection).
    return f"__Host-{base}" if settings.https else base


def set_cookie(response: Response, settings: Settings, base: str, value: str, *, max_age: int | None = None,
               samesite: Literal["lax", "strict"] = "lax") -> None:
    response.set_cookie(cookie_name(settings, base), value, max_age=max_age, path="/", secure=settings.https,
                        httponly=True, samesite=samesite)


def clear_cookie(response: Response, settings: Settings, base: str) -> None:
    response.delete_cookie(cookie_name(settings, base), path="/", secure=settings.https, httponly=True)


def get_cookie(request: Request, base: str) -> str | None:
    return request.cookies.get(cookie_name(app_settings(request), base))


# ---- one-shot notices ("Le document a été ajouté") ----------------------------------------------------

NOTICE_COOKIE = "notice"
# A redirect's notice, said by ``flash_notice`` to ``vault.web.middleware``, which sets the cookie
# with the settings' flags (``__Host-`` and Secure on HTTPS): ``redirect()`` needs no request for it.
NOTICE_HEADER = "x-vault-notice"


def flash_notice(response: Response, url: str) -> None:
    """When ``url`` is a page of this site with a ``notice``, a short-lived cookie says that notice
    may be shown once: the page shows it (``notice_key``) and ``render`` clears the cookie, so that a
    reload, a bookmark or the URL kept by a later failed form does not say it again."""
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith("/"):
        return
    key = (parse_qs(parts.query).get("notice") or [""])[0]
    if key and len(key) <= 40:
        response.headers[NOTICE_HEADER] = key


def notice_set_cookie(settings: Settings, key: str) -> str:
    """The ``Set-Cookie`` header of a notice: the same flags as the service's other cookies."""
    carrier = Response()
    set_cookie(carrier, settings, NOTICE_COOKIE, key, max_age=300)
    return carrier.headers["set-cookie"]


def notice_key(request: Request) -> str:
    """The ``notice`` of the page's address when it is the one just announced (its cookie), else ""."""
    key = request.query_params.get("notice", "")
    return key if key and get_cookie(request, NOTICE_COOKIE) == key else ""


# ---- language ------------------------------------------------------------------------------------


def language(request: Request) -> str:
    """French unless the citizen chose English (the header's link: ``?lang=en``, then a cookie)."""
    chosen = request.query_params.get("lang") or request.cookies.get("lang")
    return chosen if chosen in LANGUAGES else "fr"


# ---- CSRF (double submit; the cookie is __Host- prefixed on HTTPS) ------------------------------------


def csrf_token(request: Request) -> str:
    """The token to put in forms; created on first use and sent back as a cookie by ``render``."""
    token = getattr(request.state, "csrf_token", None) or get_cookie(request, "csrf")
    if not token or len(token) != 43:
        token = secrets.token_urlsafe(32)
        request.state.new_csrf_token = token
    request.state.csrf_token = token
    return token


def rotate_csrf(request: Request, response: Response) -> None:
    """A new CSRF token at login and logout: a token planted before login is worthless after."""
    token = secrets.token_urlsafe(32)
    request.state.csrf_token = token
    set_cookie(response, app_settings(request), "csrf", token, samesite="strict")


class BodyTooLarge(Exception):
    """The request body goes past the limit (reading stopped there)."""


async def read_small_body(request: Request, limit: int) -> bytes:
    """The whole body of a small request, reading no more than ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge()
    return bytes(body)


def form_values(request: Request, name: str) -> list[str]:
    """Every value sent for ``name`` in the form ``read_form`` read (ticked checkboxes), in order."""
    lists: dict[str, list[str]] = getattr(request.state, "form_lists", {})
    return list(lists.get(name, []))


async def read_form(request: Request) -> dict[str, str]:
    """Parse a small form (urlencoded or multipart without files) and check its CSRF token.

    Raises PageError: 415 for another body type, 413 past 64 KiB, 400 for a malformed body or an
    over-long field, 403 for a missing or wrong CSRF token.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM_BYTES):
        raise PageError(413, "Le formulaire envoyé est trop volumineux.")
    fields: list[tuple[str, str]]
    if content_type == "application/x-www-form-urlencoded":
        try:
            body = await read_small_body(request, MAX_FORM_BYTES)
        except BodyTooLarge:
            raise PageError(413, "Le formulaire envoyé est trop volumineux.") from None
        try:
            fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                               max_num_fields=MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            raise PageError(400, "Le formulaire envoyé est illisible. Rechargez la page et recommencez.") from None
    elif content_type == "multipart/form-data":
        try:
            parsed = await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_CHARS * 4)
        except Exception:  # noqa: BLE001  (starlette raises HTTPException, MultiPartException… on bad bodies)
            raise PageError(400, "Le formulaire envoyé est illisible. Rechargez la page et recommencez.") from None
        fields = [(k, v) for k, v in parsed.multi_items() if isinstance(v, str)]
    else:
        raise PageError(415, "Cette adresse attend un formulaire.")
    form: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for key, value in fields:
        if len(value) > MAX_FIELD_CHARS:
            raise PageError(400, "Un des champs est trop long.")
        if "\x00" in value:
            raise PageError(400, "Un des champs contient un caractère interdit.")
        form.setdefault(key, value)
        lists.setdefault(key, []).append(value)
    request.state.form_lists = lists  # every value of a repeated field (checkboxes): form_values()
    cookie = get_cookie(request, "csrf") or ""
    sent = form.pop(CSRF_FIELD, "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise PageError(
            403,
            N_("Ce formulaire a expiré ou ne vient pas de ce site. Rechargez la page, puis recommencez."),
            title=N_("Formulaire expiré"),
        )
    return form


# ---- client address ------------------------------------------------------------------------------


def client_address(request: Request) -> str:
    """The peer's address; X-Forwarded-For is believed only from a trusted proxy (an address or a
    network of VAULT_TRUSTED_PROXIES), read from the right: the first hop not a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    networks = app_settings(request).trusted_proxy_networks
    if networks and _within(peer, networks):
        forwarded = [p.strip() for p in request.headers.get("x-forwarded-for", "").split(",") if p.strip()]
        for hop in reversed(forwarded):
            if not _within(hop, networks):
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:
                    break
    return peer


def _within(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


# ---- rendering -----------------------------------------------------------------------------------


def render(request: Request, template: str, context: dict[str, Any] | None = None, *, status: int = 200) -> HTMLResponse:
    settings = app_settings(request)
    lang = language(request)
    translated = translations(lang)

    def _(text: str) -> str:
        """A sentence translated; a Message with its values put back in."""
        if isinstance(text, Message):
            return translated.gettext(text.msgid) % text.params if text.params else translated.gettext(text.msgid)
        return translated.gettext(text)

    ctx: dict[str, Any] = {
        "request": request,
        "settings": settings,
        "lang": lang,
        "_": _,
        "commune_label": geo.commune_label,
        "country_label": lambda code: geo.country_label(code, lang),
        "device_label": device_label,
        "gettext": translated.gettext,
        "ngettext": translated.ngettext,
        "csrf_token": csrf_token(request),
        "current": getattr(request.state, "current", None),
        "errors": {},
        "values": {},
        "local": lambda at: at.astimezone(ZoneInfo(settings.timezone)),  # a stored UTC time, as the city reads it
    }
    ctx.update(context or {})
    response = TEMPLATES.TemplateResponse(request, template, ctx, status_code=status)
    if new := getattr(request.state, "new_csrf_token", None):
        set_cookie(response, settings, "csrf", new, samesite="strict")
    if get_cookie(request, NOTICE_COOKIE) is not None:  # shown (or passed by) once: not again
        clear_cookie(response, settings, NOTICE_COOKIE)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie("lang", lang, max_age=365 * 24 * 3600, path="/", samesite="lax",
                            secure=settings.https)
    return response


def message_page(request: Request, *, title: str, message: str, status: int = 200,
                 link: tuple[str, str] | None = None) -> HTMLResponse:
    return render(request, "message.html", {"title": title, "message": message, "link": link}, status=status)

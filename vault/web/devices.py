"""A device as a person names it ("Firefox sur Windows", "Safari sur iPhone"), from the User-Agent
header a login session kept: "Mon compte" lists where the account is logged in. The header is read
by ua-parser (the maintained port of the user-agent rules browsers and crawlers are known by)."""

from __future__ import annotations

import functools

from ua_parser import parse

from vault.translation import N_, Message

UNKNOWN = N_("Navigateur inconnu")

# ua-parser's families as people know them: the browser, not its mobile or iOS build.
_BROWSERS = {
    "Mobile Safari": "Safari", "Mobile Safari UI/WKWebView": "Safari", "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome", "Chrome Mobile WebView": "Chrome", "HeadlessChrome": "Chrome",
    "Chromium": "Chromium", "Firefox Mobile": "Firefox", "Firefox iOS": "Firefox", "Edge Mobile": "Edge",
    "Opera Mobile": "Opera", "Samsung Internet": "Samsung Internet",
}
_SYSTEMS = {"Mac OS X": "Mac", "macOS": "Mac", "Chrome OS": "ChromeOS", "Ubuntu": "Linux", "Fedora": "Linux",
            "Debian": "Linux"}


@functools.lru_cache(maxsize=256)
def device_label(user_agent: str | None) -> str:
    """"Firefox sur Windows", "Safari sur iPhone", "Chrome sur Android"; the browser alone when the
    system is not known; "Navigateur inconnu" when the browser is not (a Message: shown translated)."""
    result = parse((user_agent or "")[:500])
    family = result.user_agent.family if result.user_agent else ""
    device = result.device.family if result.device else ""
    if not family or family == "Other" or device == "Spider":  # nothing known, or a robot's made-up name
        return Message(UNKNOWN)
    browser = _BROWSERS.get(family, family)
    system = result.os.family if result.os and result.os.family != "Other" else ""
    if system == "iOS":
        system = device if device in ("iPhone", "iPad", "iPod") else "iPhone"
    system = _SYSTEMS.get(system, system)
    if not system:
        return browser  # a brand name: the same in every language
    return Message(N_("%(browser)s sur %(system)s"), browser=browser, system=system)

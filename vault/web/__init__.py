"""The web floor (docs/architecture.md): templates, static files, translations, page helpers
(CSRF, cookies, security headers), request dependencies and the one place where errors become
answers. It imports no domain."""

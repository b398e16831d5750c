"""HTML pages: templates, static files and page helpers (CSRF, notices, i18n, security headers)."""

"""A headless browser page that keeps every console error and refuses (and keeps) every request
to a host outside `allowed`: the browser tests of the open page and the console assert that a
page draws without errors and without reaching the internet."""

from __future__ import annotations

from urllib.parse import urlsplit


def guarded_page(browser, url: str, allowed: set[str], **context_options):
    """(context, page, errors, outside) with `url` loaded."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def guard(route) -> None:
        if urlsplit(route.request.url).netloc in allowed:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.set_default_timeout(30_000)
    page.goto(url)
    return context, page, errors, outside

"""The console's alarms view in a real browser (headless Debian Chromium through Playwright)
against a real API and PostgreSQL: the tab counts the active alarms, the list shows them live
(an alarm opened while the page is open appears, a cleared one leaves), and an open alarm is
acknowledged with a comment. No console errors."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psycopg
import pytest

from api import create_app
from citylab.settings import Settings
from storage.alarms import Episode, apply_episodes, create_rule
from storage.registry import ensure_series, register_device
from storage.tenants import create_key, create_org

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from stack import serving  # noqa: E402

pytestmark = pytest.mark.slow

T0_US = int(time.time() - 3600) * 1_000_000  # an hour ago: inside the view's 24 h of cleared alarms
TIMEOUT_MS = 30_000


def test_alarms_live_with_acknowledgement(database: str, browser) -> None:
    with psycopg.connect(database) as conn:
        org = create_org(conn, name="City", kind="city", slug="city")
        _, key = create_key(conn, org_id=org.id, role="admin")
        register_device(conn, org="city", device="air-1")
        ids = ensure_series(conn, [("city", "air-1", q, "ug/m3") for q in ("pm2_5", "no2")])
        pm = create_rule(conn, org="city", name="pm25-class", series_id=ids[("city", "air-1", "pm2_5")], on=25.0,
                         severity="critical")
        no2 = create_rule(conn, org="city", name="no2-class", series_id=ids[("city", "air-1", "no2")], on=200.0)
        (pm_alarm, _), = apply_episodes(conn, [Episode(pm.id, T0_US, 31.0, True)])
    errors: list[str] = []
    with serving(create_app(Settings(database_url=database))) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(f"{url}/")
            page.fill("#api-key", key)
            page.click("#use-key")
            page.wait_for_function("document.getElementById('alarm-count').textContent === '1'")
            page.click("#tabs button[data-view=alarms]")
            row = page.locator(f"#alarm-list tr[data-alarm='{pm_alarm}']")
            assert "pm25-class" in row.inner_text() and "critical" in row.inner_text()
            assert "air-1 · pm2_5" in row.inner_text() and "value 31.00" in row.inner_text()
            with psycopg.connect(database) as conn:  # opened while the page is open: it appears
                (no2_alarm, _), = apply_episodes(conn, [Episode(no2.id, T0_US + 60_000_000, 250.0, True)])
            page.wait_for_selector(f"#alarm-list tr[data-alarm='{no2_alarm}']")
            row.locator("input").fill("crew sent")
            row.locator("button").click()
            page.wait_for_selector(f"#alarm-list tr[data-alarm='{pm_alarm}'].state-acknowledged")
            assert "crew sent" in page.locator(f"#alarm-list tr[data-alarm='{pm_alarm}']").inner_text()
            with psycopg.connect(database) as conn:
                state, comment = conn.execute("SELECT state, ack_comment FROM alarms WHERE id = %s",
                                              (pm_alarm,)).fetchone()
                assert (state, comment) == ("acknowledged", "crew sent")
                apply_episodes(conn, [Episode(no2.id, T0_US + 120_000_000, 100.0, False)])  # it clears
            page.wait_for_selector(f"#alarm-list tr[data-alarm='{no2_alarm}']", state="detached")
            page.select_option("#alarms-filter", "recent")  # the cleared one, when asked for
            page.wait_for_selector(f"#alarm-list tr[data-alarm='{no2_alarm}'].state-cleared")
            assert page.inner_text("#alarms-summary") == "1 active · 0 not acknowledged"
        finally:
            page.close()
    assert errors == []

"""The lab console in a real browser (headless Debian Chromium through Playwright).

The lab runs with its demo district; the page is opened at `/`, signed in with an
API key of the demo's organisation, and checked as a person would look at it: the
fleet list and map, a chart with data, the anomalies feed, the data products with
their quality reports, and the SME onboarding flow, where a real MQTT client
publishes with the credentials the page showed once and the page sees the first
reading arrive. No console errors, no request leaving the machine. Screenshots go
to the test artefacts.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest

from demo_lab import DemoLab

pytestmark = pytest.mark.slow

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def session(console_lab: DemoLab, browser, artifacts_dir: Path):
    """One page for the whole walk, with every console error and outside request collected."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))

    lab_host = urlsplit(console_lab.api_url).netloc

    def guard(route) -> None:
        if urlsplit(route.request.url).netloc == lab_host:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.set_default_timeout(TIMEOUT_MS)
    yield {"page": page, "errors": errors, "outside": outside, "lab": console_lab, "shots": artifacts_dir}
    (artifacts_dir / "console_errors.json").write_text(json.dumps({"errors": errors, "outside": outside}, indent=2))
    context.close()


def _shot(session: dict, name: str) -> Path:
    path = session["shots"] / f"console_{name}.png"
    session["page"].screenshot(path=str(path), full_page=True)
    return path


def test_the_page_and_its_assets_are_served_by_the_api(console_lab: DemoLab) -> None:
    index = httpx.get(f"{console_lab.api_url}/", timeout=10)
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assets = [part.split('"')[0] for part in index.text.split('="/console/static/')[1:]]
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert httpx.get(f"{console_lab.api_url}/console/static/{asset}", timeout=10).status_code == 200
    assert httpx.get(f"{console_lab.api_url}/console/static/../routes.py", timeout=10).status_code == 404
    assert httpx.get(f"{console_lab.api_url}/console/api/fleet", timeout=10).status_code == 401


def test_overview_shows_fleet_chart_and_anomalies(session: dict) -> None:
    page, lab = session["page"], session["lab"]
    page.goto(f"{lab.api_url}/")
    page.wait_for_selector("#signin-banner:not([hidden])")
    page.fill("#api-key", lab.key)
    page.click("#use-key")
    page.wait_for_function("document.querySelectorAll('#fleet-list tbody tr').length >= 33")
    page.wait_for_function("document.querySelectorAll('#fleet-map path.leaflet-interactive.marker').length >= 33")
    page.wait_for_function("Number(document.querySelector('#chart').dataset.points || 0) > 0")
    page.wait_for_selector("#chart canvas")
    page.wait_for_selector("#anomaly-feed li")
    online = page.locator("#fleet-list .badge-online").count()
    assert online >= 30, f"only {online} devices online"
    gateways = page.locator("#fleet-list tr[data-device^='gw-']").count()
    assert gateways == 3
    assert "online" in page.inner_text("#fleet-summary")
    assert page.inner_text("#lab-status").startswith(tuple("0123456789"))
    # a click on a device opens its chart
    page.click("#fleet-list tr[data-device='noise-001']")
    page.wait_for_function("document.querySelector('#series-select').selectedOptions[0].textContent.startsWith('noise-001')")
    page.wait_for_function("Number(document.querySelector('#chart').dataset.points || 0) > 0")
    _shot(session, "overview")
    assert session["errors"] == []


def test_data_products_with_quality_reports(session: dict) -> None:
    page = session["page"]
    page.click("#tabs button[data-view=products]")
    page.wait_for_selector(".product table.quality tbody tr")
    card = page.inner_text(".product")
    assert "Air quality, central district" in card and "CC-BY-4.0" in card
    assert "7 days" in card and "30 days" in card
    _shot(session, "products")
    assert session["errors"] == []


def _publish(url: str, username: str, password: str, topic: str, records: list[dict]) -> None:
    parts = urlsplit(url)
    # a device's broker login is bound to its client id, the username
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    client.connect(parts.hostname, parts.port or 1883)
    client.loop_start()
    try:
        info = client.publish(topic, json.dumps(records).encode(), qos=1)
        info.wait_for_publish(timeout=15)
        assert info.is_published()
    finally:
        client.loop_stop()
        client.disconnect()


def test_onboarding_flow_shows_credentials_once_and_the_first_reading(session: dict) -> None:
    page = session["page"]
    device = f"sme-air-{uuid.uuid4().hex[:6]}"
    page.click("#tabs button[data-view=onboarding]")
    page.fill("#device-id", device)
    page.click("#register")
    page.wait_for_selector("#credentials:not([hidden])")
    password = page.inner_text("#cred-password").strip()
    username = page.inner_text("#cred-username").strip()
    url = page.inner_text("#cred-url").strip()
    topic = page.inner_text("#cred-topic").strip()
    assert password and username and url.startswith("mqtt://") and topic.endswith(f"/{device}/up")
    assert "shown once" in page.inner_text("#credentials")
    page.wait_for_selector("#first-reading:not(.arrived)")
    _shot(session, "onboarding_credentials")

    now = time.time()
    _publish(url, username, password, topic, [
        {"bt": now, "bid": "boot-1", "seq": 0, "bn": f"{device}/", "n": "pm2_5", "u": "ug/m3", "v": 7.5},
        {"n": "temperature", "u": "Cel", "v": 4.25},
    ])
    page.wait_for_selector("#first-reading.arrived")
    assert "First reading arrived" in page.inner_text("#first-reading-state")
    _shot(session, "onboarding_first_reading")

    # the credentials are shown once: the API does not hand the password out again
    devices = httpx.get(f"{session['lab'].api_url}/v1/devices",
                        headers={"Authorization": f"Bearer {session['lab'].key}"}, timeout=10).json()
    assert password not in json.dumps(devices)

    # a reading outside the physical range of PM2.5 is flagged and appears in the feed
    _publish(url, username, password, topic, [
        {"bt": now + 1, "bid": "boot-1", "seq": 1, "bn": f"{device}/", "n": "pm2_5", "u": "ug/m3", "v": 5000.0},
    ])
    page.click("#tabs button[data-view=overview]")
    page.wait_for_selector(f"#anomaly-feed li.anomaly:has-text('{device}')")
    page.click(f"#anomaly-feed li.anomaly.kind-out_of_range:has-text('{device}')")
    page.wait_for_function(
        f"document.querySelector('#series-select').selectedOptions[0]?.textContent.startsWith('{device} · pm2_5')")
    page.wait_for_function("Number(document.querySelector('#chart').dataset.anomalies || 0) > 0")
    _shot(session, "anomaly_feed")
    assert session["errors"] == []


def test_no_console_errors_and_nothing_fetched_from_outside(session: dict) -> None:
    assert session["errors"] == []
    assert session["outside"] == []

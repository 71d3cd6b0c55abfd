"""The console's fleet map in headless Chromium: with no tile source set, the districts
and devices over a plain outline with a grid (no request leaves the machine); with one
set, Leaflet draws its tiles from it, with its attribution. Screenshots go to the test
artefacts as console_map_*.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError
from catalog_lab import Market, seed_market
from guarded_page import guarded_page
from test_catalog_harvest import serving
from tile_server import TileServer, tile_server

from citylab.embedded import free_port
from citylab.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def market(database: str) -> Market:
    return seed_market(database)


@pytest.fixture
def tiles() -> Iterator[TileServer]:
    with tile_server() as server:
        yield server


def _signed_in(browser, api: str, key: str, allowed: set[str]):
    """The console at `/` signed in with `key`, its map drawn; every error and outside request kept."""
    context, page, errors, outside = guarded_page(browser, f"{api}/", allowed,
                                                  viewport={"width": 1400, "height": 1000})
    page.wait_for_selector("#signin-banner:not([hidden])")
    page.fill("#api-key", key)
    page.click("#use-key")
    page.wait_for_function("document.querySelectorAll('#fleet-list tbody tr').length >= 3")
    page.wait_for_function("document.querySelectorAll('#fleet-map path.leaflet-interactive.marker').length >= 3")
    return context, page, errors, outside


def test_without_a_tile_source_the_fleet_map_draws_a_plain_outline(browser, market: Market,
                                                                    artifacts_dir: Path) -> None:
    port = free_port()
    with serving(Settings(database_url=market.url, public_base_url=f"http://127.0.0.1:{port}"), port) as api:
        context, page, errors, outside = _signed_in(browser, api, market.air.key, {urlsplit(api).netloc})
        assert page.locator("#fleet-map path.outline").count() == 1
        assert page.locator("#fleet-map path.grid").count() >= 2
        assert page.locator("#fleet-map img").count() == 0
        assert "no tile source set" in page.inner_text("#fleet-map .leaflet-control-attribution")
        assert page.locator("#fleet-map .leaflet-control-scale-line").count() == 1
        # the outline lies under the devices: every marker is inside its box
        box = page.locator("#fleet-map path.outline").bounding_box()
        for marker in page.locator("#fleet-map path.marker").all():
            m = marker.bounding_box()
            assert box["x"] <= m["x"] and m["x"] + m["width"] <= box["x"] + box["width"]
            assert box["y"] <= m["y"] and m["y"] + m["height"] <= box["y"] + box["height"]
        page.locator("#fleet-card").screenshot(path=str(artifacts_dir / "console_map_outline.png"))
        context.close()
    assert errors == [] and outside == []


def test_with_a_tile_source_the_fleet_map_draws_its_tiles(browser, market: Market, artifacts_dir: Path,
                                                          tiles: TileServer) -> None:
    port = free_port()
    settings = Settings(database_url=market.url, public_base_url=f"http://127.0.0.1:{port}",
                        map_tile_url=tiles.template, map_tile_attribution="© Test tiles")
    with serving(settings, port) as api:
        context, page, errors, outside = _signed_in(browser, api, market.air.key,
                                                    {urlsplit(api).netloc, urlsplit(tiles.url).netloc})
        page.wait_for_function("[...document.querySelectorAll('#fleet-map img.leaflet-tile')]"
                               ".some(i => i.complete && i.naturalWidth === 256)")
        assert page.locator("#fleet-map path.outline").count() == 0
        assert "© Test tiles" in page.inner_text("#fleet-map .leaflet-control-attribution")
        page.wait_for_function("[...document.querySelectorAll('#fleet-map img.leaflet-tile')].every(i => i.complete)")
        page.locator("#fleet-card").screenshot(path=str(artifacts_dir / "console_map_tiles.png"))
        context.close()
    assert errors == [] and outside == []
    assert tiles.seen and all(p.startswith("/tiles/") and p.endswith(".png") for p in tiles.seen)
    assert all(10 <= int(p.split("/")[2]) <= 19 for p in tiles.seen)


def test_the_tile_source_is_a_tile_template_or_unset() -> None:
    assert Settings(map_tile_url="", map_tile_attribution=" ").map_tile_url is None   # docker-compose's empty default
    kartverket = "https://cache.kartverket.no/v1/wmts/1.0.0/topo/default/webmercator/{z}/{y}/{x}.png"
    assert Settings(map_tile_url=kartverket).map_tile_url == kartverket
    for wrong in ("https://tiles.example/{z}/{x}.png", "javascript:alert(1)//{z}/{x}/{y}", "tiles/{z}/{x}/{y}.png"):
        with pytest.raises(ValidationError, match="URL template with"):
            Settings(map_tile_url=wrong)

"""The public city page at /open in headless Chromium (Debian's, through Playwright): a lab
with open and closed products, no key. The map of the latest values by place, a chart per
quantity over a day and a week, the units and air-quality classes, providers, licences and
download links, in Bokmål and English, on a desktop and a phone; no console error and no
request leaving the machine; with a tile source set, tiles come from it. Screenshots go to
the test artefacts as open_*.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from catalog_lab import Market, seed_market
from guarded_page import guarded_page
from test_catalog_harvest import serving
from tile_server import TileServer, tile_server

from citylab.embedded import free_port
from citylab.settings import Settings
from storage.catalog import save_harvest

pytestmark = pytest.mark.slow


@pytest.fixture
def market(database: str) -> Market:
    return seed_market(database)


@pytest.fixture
def tiles() -> Iterator[TileServer]:
    with tile_server() as server:
        yield server


def _page(browser, url: str, allowed: set[str], *, phone: bool = False):
    options = ({"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
                "has_touch": True} if phone else {"viewport": {"width": 1280, "height": 900}})
    context, page, errors, outside = guarded_page(browser, url, allowed, **options)
    page.wait_for_selector("body[data-ready=true]")
    return context, page, errors, outside


def _neighbour(url: str) -> None:
    """A dataset harvested from a neighbouring lab (as `citylab catalog harvest` saves it)."""
    ds = "https://data.hamar.example/catalog/datasets/1"
    turtle = (f"<{ds}> a <http://www.w3.org/ns/dcat#Dataset> ; <http://purl.org/dc/terms/title> \"Bysykkel\"@nb .")
    with psycopg.connect(url, autocommit=True) as conn:
        save_harvest(conn, url="https://data.hamar.example/catalog", catalog_iri="https://data.hamar.example/catalog",
                     title="Hamar", description="", datasets=[(ds, "Bysykkel", "Hamar kommune",
                                                               "https://data.hamar.example/open", turtle)])


def test_the_city_page_shows_open_data_only(browser, market: Market, artifacts_dir: Path) -> None:
    _neighbour(market.url)
    port = free_port()
    with serving(Settings(database_url=market.url, public_base_url=f"http://127.0.0.1:{port}"), port) as api:
        host = urlsplit(api).netloc
        context, page, errors, outside = _page(browser, f"{api}/open?lang=nb", {host})
        assert page.title() == "Åpne data fra byen" and page.get_attribute("html", "lang") == "nb"
        # the map: two places of the open product, over a plain outline (no tile source set)
        assert page.locator("#map svg circle.sensor").count() == 2
        assert page.locator("#map svg rect.outline").count() == 1 and page.locator("#map img").count() == 0
        assert "ingen bakgrunnskart" in page.inner_text("#map-hint")
        places = page.inner_text("#places")
        assert "air-1" in places and "air-2" in places and "PM2,5 (svevestøv)" in places
        assert "µg/m³" in places and "Lite" in places           # 10..15 µg/m³: the lowest class
        # a chart per quantity over the last day, each with a line
        assert sorted(page.locator(".chart").evaluate_all("e => e.map(n => n.dataset.quantity)")) == \
            ["no2", "pm10", "pm2_5"]
        assert page.locator(".chart polyline.line").count() == 3
        # what the numbers mean: unit and the Norwegian air-quality classes
        meaning = page.inner_text("#meaning")
        assert "mikrogram" not in meaning and "microgram per cubic metre" in meaning
        assert "Svært høy" in meaning and "≥ 150" in meaning
        # provider, licence, downloads that work without a key
        products = page.inner_text("#products")
        assert "Luftkvalitet AS" in products and "NLOD-2.0" in products
        assert "Energimåling AS" not in products and "Street noise" not in products
        href = page.get_attribute(".dl-csv-day", "href")
        csv = httpx.get(f"{api}{href}", timeout=20)
        assert csv.status_code == 200 and csv.text.startswith("series_id,device,quantity,unit,time,value")
        assert csv.text.count("\n") > 4 * 300
        # what neighbouring cities publish, harvested into the catalogue
        assert "Data fra nabokommuner" in page.inner_text("#external-card")
        assert page.get_attribute("#external a", "href") == "https://data.hamar.example/open"
        # nothing closed on the page
        body = page.inner_text("body")
        assert "meter-1" not in body and "noise-1" not in body and "energy" not in body.lower()
        page.screenshot(path=str(artifacts_dir / "open_desktop_nb.png"), full_page=True)
        # English, and the week
        page.click("#lang-en")
        page.wait_for_selector("body[data-ready=true]")
        assert page.title() == "Open data from the city" and "Latest readings" in page.inner_text("#map-card")
        page.click("[data-range=week]")
        page.wait_for_selector("body[data-ready=true]")
        assert page.locator(".chart polyline.line").count() == 3
        assert "Low" in page.inner_text("#places")
        page.screenshot(path=str(artifacts_dir / "open_desktop_en_week.png"), full_page=True)
        context.close()
        # a phone
        context, phone, phone_errors, phone_outside = _page(browser, f"{api}/open?lang=nb", {host}, phone=True)
        phone.screenshot(path=str(artifacts_dir / "open_phone_nb.png"), full_page=True)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        context.close()
    assert errors == [] and phone_errors == []
    assert outside == [] and phone_outside == []


def test_with_a_tile_source_the_map_draws_its_tiles(browser, market: Market, artifacts_dir: Path,
                                                    tiles: TileServer) -> None:
    port = free_port()
    settings = Settings(database_url=market.url, public_base_url=f"http://127.0.0.1:{port}",
                        map_tile_url=tiles.template, map_tile_attribution="© Test tiles")
    with serving(settings, port) as api:
        allowed = {urlsplit(api).netloc, urlsplit(tiles.url).netloc}
        context, page, errors, outside = _page(browser, f"{api}/open?lang=en", allowed)
        assert page.locator("#map img.tile").count() >= 1
        assert page.locator("#map svg rect.outline").count() == 0
        assert "© Test tiles" in page.inner_text("#map-hint")
        page.wait_for_function("[...document.querySelectorAll('#map img.tile')].every(i => i.complete)")
        page.screenshot(path=str(artifacts_dir / "open_tiles.png"))
        context.close()
    assert errors == [] and outside == []
    assert tiles.seen and all(p.startswith("/tiles/") and p.endswith(".png") for p in tiles.seen)
    z = {int(p.split("/")[2]) for p in tiles.seen}
    assert len(z) == 1 and 10 <= z.pop() <= 18

"""The fleet page: its files are public, its API needs the token, and in a real headless
Chromium (Debian's chromium + chromium-driver, driven by selenium) a person logs in, sees a
device appear after its sidecar syncs, its last value, and the chart of a key with one point
per reported value. The browser test skips with the reason when Chromium is not installed."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cloudsync.procs import API_TOKEN, Cloud, device_resources, eventually
from tests.invocation.procs import Sidecar
from tests.support.sidecar import ManagedProcess, stopped_at_the_end

pytestmark = pytest.mark.slow

TEMPS = [21.5, 22.0, 23.25, 22.75, 24.5]  # the last one is no whole number: JS shows 24.0 as 24


@pytest.fixture
async def procs() -> AsyncIterator[list[ManagedProcess]]:
    async for started in stopped_at_the_end():
        yield started


async def _device_with_history(tmp_path: Path, procs: list[Any]) -> Cloud:
    """A cloud and device ``dev-f`` that reported ``temp`` once per value of TEMPS."""
    cloud = Cloud(tmp_path / "cloud")
    procs.append(cloud)
    await cloud.start()
    side = await _report(tmp_path, procs, cloud)
    async with httpx.AsyncClient(base_url=side.url, timeout=10) as c:
        r = await c.post("/v1.0/state/statestore", json=[{"key": "mode", "value": "eco"}])
        assert r.status_code == 204
    return cloud


async def test_page_is_public_and_its_api_needs_the_token(
    tmp_path: Path, procs: list[Any]
) -> None:
    cloud = await _device_with_history(tmp_path, procs)
    async with httpx.AsyncClient(base_url=cloud.url, timeout=10) as c:
        page = await c.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script src="/fleet.js">' in page.text
        js = await c.get("/fleet.js")
        assert js.status_code == 200
        assert "sessionStorage" in js.text
        assert (await c.get("/fleet.css")).status_code == 200
        assert (await c.get("/v1/devices/dev-f/state")).status_code == 401
        assert (await c.get("/v1/devices/dev-f/history/statestore/temp")).status_code == 401
    values = (await cloud.get("/v1/devices/dev-f/state")).json()
    assert [(v["store"], v["key"], v["value"]) for v in values] == [
        ("statestore", "mode", "eco"), ("statestore", "temp", TEMPS[-1])]
    points = (await cloud.get("/v1/devices/dev-f/history/statestore/temp")).json()["points"]
    assert [p["value"] for p in points] == TEMPS
    assert [p["at"] for p in points] == sorted(p["at"] for p in points)
    later = await cloud.get("/v1/devices/dev-f/history/statestore/temp",
                            params={"since": points[-1]["at"], "limit": 10})
    assert [p["value"] for p in later.json()["points"]] == [TEMPS[-1]]
    newest = await cloud.get("/v1/devices/dev-f/history/statestore/temp", params={"limit": 2})
    assert [p["value"] for p in newest.json()["points"]] == TEMPS[-2:]
    bad = await cloud.get("/v1/devices/dev-f/history/statestore/temp", params={"since": "x"})
    assert bad.status_code == 400


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.access("/usr/bin/chromedriver", os.X_OK) else None)
    return (browser, driver) if browser and driver else None


def _browse(url: str, browser: str, driver_path: str, last: str,
            points: int, shot: Path) -> dict[str, Any]:
    """Log in, pick the device, wait for its ``last`` temp and a chart of ``points``
    points; what the page showed (a screenshot in ``shot`` when it failed)."""
    from selenium import webdriver
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        # The page re-renders its tables every 2 s: elements found may go stale.
        wait = WebDriverWait(drv, 60, poll_frequency=0.1, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException))
        drv.get(url)
        wait.until(lambda d: d.find_element(By.ID, "token").is_displayed())
        seen: dict[str, Any] = {"before": drv.find_element(By.ID, "fleet").is_displayed()}
        drv.find_element(By.ID, "token").send_keys("wrong-token")
        drv.find_element(By.ID, "login-button").click()
        wait.until(lambda d: d.find_element(By.ID, "login-error").text)
        seen["refused"] = drv.find_element(By.ID, "login-error").text
        token = drv.find_element(By.ID, "token")
        token.clear()
        token.send_keys(API_TOKEN)
        drv.find_element(By.ID, "login-button").click()
        device = 'tr[data-device="dev-f"]'
        seen["online"] = wait.until(lambda d: d.find_element(
            By.CSS_SELECTOR, device + " td:nth-child(2)").text)
        seen["stored_token"] = drv.execute_script(
            "return sessionStorage.getItem('edgeCloudToken')")
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, device).click() or True)
        temp = 'tr[data-key="statestore/temp"]'
        # The device may still be reporting: its last value is the last one written.
        seen["last"] = wait.until(lambda d: (t := d.find_element(
            By.CSS_SELECTOR, temp + " td.value").text) == last and t)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, temp + " button.chart").click()
                   or True)
        seen["points"] = wait.until(lambda d: len(d.find_elements(
            By.CSS_SELECTOR, "svg#chart circle.point")) == points and points)
        seen["title"] = drv.find_element(By.ID, "chart-title").text
        seen["ys"] = [float(c.get_attribute("cy") or "nan") for c in
                      drv.find_elements(By.CSS_SELECTOR, "svg#chart circle.point")]
    except Exception:
        drv.save_screenshot(str(shot))  # what the page showed, for whoever reads the failure
        raise
    finally:
        drv.quit()
    return seen


async def test_fleet_page_in_headless_chromium(tmp_path: Path, procs: list[Any]) -> None:
    found = _chromium()
    if found is None:
        pytest.skip("no chromium + chromedriver (make system-deps installs Debian's)")
    pytest.importorskip("selenium", reason="selenium is in the test extra")
    cloud = Cloud(tmp_path / "cloud")
    procs.append(cloud)
    await cloud.start()
    # The page is open before the device exists: it appears when its sidecar syncs.
    page = asyncio.create_task(asyncio.to_thread(_browse, cloud.url, *found, str(TEMPS[-1]),
                                                 len(TEMPS), tmp_path / "page.png"))
    await asyncio.sleep(0)  # let the browser start while the device comes up
    await _report(tmp_path, procs, cloud)
    seen = await page
    assert seen["before"] is False  # nothing but the login until a token is given
    assert seen["refused"] == "The token was refused."
    assert seen["online"] == "online"
    assert seen["stored_token"] == API_TOKEN
    assert seen["last"] == str(TEMPS[-1])
    assert seen["points"] == len(TEMPS)
    assert seen["title"] == f"statestore/temp: {len(TEMPS)} point(s)"
    # SVG y grows downwards: the highest temperature is the topmost point.
    assert seen["ys"].index(min(seen["ys"])) == TEMPS.index(max(TEMPS))


async def _report(tmp_path: Path, procs: list[Any], cloud: Cloud) -> Sidecar:
    """Device ``dev-f`` reports ``temp`` once per value of TEMPS, one write at a time (each
    reaches the cloud before the next: each is its own point of the history)."""
    side = Sidecar(tmp_path, "dev", resources=device_resources(cloud.endpoint, "dev-f"))
    procs.append(side)
    await side.start()
    async with httpx.AsyncClient(base_url=side.url, timeout=10) as c:
        for i, t in enumerate(TEMPS):
            r = await c.post("/v1.0/state/statestore", json=[{"key": "temp", "value": t}])
            assert r.status_code == 204, r.text

            async def arrived(n: int = i + 1) -> bool:
                r = await cloud.get("/v1/devices/dev-f/history/statestore/temp")
                return r.status_code == 200 and len(r.json()["points"]) == n

            await eventually(arrived)
    return side

"""The HTML reports in a real browser: headless Chromium (Debian's) driven over the DevTools
protocol by Playwright. The page must render its charts offline, run its own JavaScript without an
error, label every point on hover and sort its tables."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EXAMPLE = Path(__file__).parents[2] / "benchmarks" / "results" / "report" / "report.html"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser_page(tmp_path: Path) -> Any:
    """A page in a fresh Chromium profile that records console errors, page errors and every
    request that is not for a local file (each of those is refused)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install '.[dev]'")
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (make sysdeps)")
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        page = ctx.new_page()
        page.problems, page.remote = [], []  # type: ignore[attr-defined]
        page.on(
            "console",
            lambda m: (
                m.type in ("error", "warning") and page.problems.append(f"{m.type}: {m.text}")
            ),
        )
        page.on("pageerror", lambda e: page.problems.append(f"pageerror: {e}"))

        def refuse(route: Any) -> None:
            if not route.request.url.startswith("file://"):
                page.remote.append(route.request.url)
                route.abort()
            else:
                route.continue_()

        page.route("**/*", refuse)
        try:
            yield page
        finally:
            ctx.close()


def _open(page: Any, html: Path, shot: Path) -> None:
    from PIL import Image

    page.goto(html.resolve().as_uri())
    page.wait_for_selector(".js-plotly-plot .main-svg")
    page.wait_for_timeout(500)
    page.screenshot(path=str(shot), full_page=True)
    rgb = np.asarray(Image.open(shot).convert("RGB"))[::4, ::4].reshape(-1, 3)
    inked = float((rgb.sum(axis=1) < 720).mean())  # share of pixels that are not near-white
    colours = len(np.unique(rgb, axis=0))
    assert inked > 0.03 and colours > 50, f"the screenshot is blank ({inked:.1%}, {colours})"


def _check_page(page: Any) -> None:
    assert page.problems == [], page.problems
    assert page.remote == [], f"the report fetched {page.remote}"
    assert page.evaluate("typeof Plotly") == "object"
    assert page.locator(".recommend").inner_text().startswith("What to deploy")
    assert "edgeprune deploy" in page.locator(".recommend").inner_text()


def _hover_text(page: Any) -> str:
    """Hover the first marker of the first accuracy-latency chart; return its label."""
    point = page.locator(".js-plotly-plot").first.locator(".scatterlayer .point").first
    point.hover(force=True)
    page.wait_for_selector(".hoverlayer .hovertext", timeout=5000)
    return str(page.locator(".hoverlayer .hovertext").first.text_content())


def _sorts(page: Any, header: str) -> None:
    table = page.locator("table.sortable", has=page.locator(f"th:text-is('{header}')")).first
    col = [t.strip() for t in table.locator("th").all_inner_texts()].index(header)

    def column() -> list[float]:
        cells = table.locator(f"tbody tr td:nth-child({col + 1})").all()
        return [float(c.get_attribute("data-sort")) for c in cells]

    table.locator(f"th:text-is('{header}')").click()
    assert column() == sorted(column())
    table.locator("th", has_text=header).first.click()
    assert column() == sorted(column(), reverse=True)


def test_run_report_renders_offline_without_script_errors(
    browser_page: Any, tmp_path: Path
) -> None:
    from sshfarm import FAST

    from edgeprune.pipeline.flows import PruneRunConfig, prune_run
    from edgeprune.prune import PruneConfig, Target

    cfg = PruneRunConfig(
        prune=PruneConfig(target=Target("ratio", 0.5), round_to=4), devices=("local",), bench=FAST
    )
    run = tmp_path / "run"
    prune_run("resnet20", "digits", cfg, run, input_size=8)
    _open(browser_page, run / "report.html", tmp_path / "run.png")
    _check_page(browser_page)
    assert browser_page.locator(".js-plotly-plot").count() >= 3
    label = _hover_text(browser_page)
    assert "resnet20" in label and "median" in label and "ms" in label
    _sorts(browser_page, "removed")


@pytest.mark.skipif(not EXAMPLE.is_file(), reason="the committed example report is missing")
def test_committed_example_report_renders_with_its_search_section(
    browser_page: Any, tmp_path: Path
) -> None:
    _open(browser_page, EXAMPLE, tmp_path / "example.png")
    _check_page(browser_page)
    text = browser_page.locator("body").inner_text()
    assert "Latency search" in text and "predicted ms" in text and "Channels per layer" in text
    label = _hover_text(browser_page)
    assert "median" in label and "accuracy" in label
    _sorts(browser_page, "measured ms")

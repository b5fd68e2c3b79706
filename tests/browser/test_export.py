"""Export in a real browser: filter the timeline, click Export, and the downloaded file holds
exactly the matching events — read back, the bodies and routing keys that were published."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from eventscope.backend.export_read import read_export
from tests.browser.conftest import Publisher
from tests.browser.test_dashboard import row, seed_event, tag, wait_live


def test_exporting_the_filtered_view_downloads_exactly_its_events(
    page: Page, publisher: Publisher, artifacts: Path, tmp_path: Path
) -> None:
    wait_live(page)
    t = tag()
    published = {
        f"order.created.{t}": seed_event("order.created"),
        f"order.paid.{t}": seed_event("order.paid"),
        f"payment.failed.{t}": seed_event("payment.failed"),
    }
    publisher.publish_many([(key, body, {"x-tag": t}) for key, body in published.items()])
    expect(row(page, f"payment.failed.{t}")).to_have_count(1)

    page.fill("input[name=routing_key]", f"order.*.{t}")
    expect(page.locator(".chip")).to_have_count(1, timeout=10_000)
    expect(row(page, f"payment.failed.{t}")).to_have_count(0)
    ndjson_link = page.locator("#export a", has_text="NDJSON")
    expect(ndjson_link).to_have_attribute("href", re.compile(r"routing_key=order\.%2A\."))
    page.screenshot(path=artifacts / "export-filtered.png")

    with page.expect_download() as download_info:
        ndjson_link.click()
    download = download_info.value
    assert re.fullmatch(r"eventscope-events-\d{8}T\d{6}Z\.ndjson", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with saved.open("rb") as stream:
        messages = list(read_export(stream))
    assert [m.routing_key for m in messages] == [f"order.created.{t}", f"order.paid.{t}"]
    for message in messages:
        assert message.exact, message.why_not
        assert json.loads(message.body) == published[str(message.routing_key)]
        assert message.headers == {"x-tag": t}
        assert message.record["masked"] is False

    with page.expect_download() as json_info:
        page.locator("#export").get_by_role("link", name="JSON", exact=True).click()
    array = json.loads(Path(json_info.value.path()).read_bytes())
    assert [item["routing_key"] for item in array] == [f"order.created.{t}", f"order.paid.{t}"]

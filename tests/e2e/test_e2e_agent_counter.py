"""The clerk's counter in a real browser (issue 13, point 7): a keyboard-only sale (type,
Enter, Enter) on a desktop in English, a recent device and a quick plan by click, scanning
with the browser's BarcodeDetector and with the vendored decoder, and the dashboard's
figures; screenshots of the dashboard and the sale page in Simplified Chinese."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import segno

from simtopup.core.transactions import durable
from simtopup.orders.models import Order
from simtopup.resellers.actions import sell_topup
from simtopup.resellers.models import Reseller
from tests.agent_support import PASSWORD, make_staff
from tests.e2e.conftest import shot
from tests.support import float_of, iccid

# A camera for the page: a canvas stream (what the test draws on it is what the camera sees).
FAKE_CAMERA = """
(() => {
  const canvas = document.createElement("canvas");
  canvas.width = 640; canvas.height = 480;
  window.__camera = canvas;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, 640, 480);
  const src = window.__cameraImage;
  if (src) {
    const img = new Image();
    img.onload = () => { ctx.imageSmoothingEnabled = false; ctx.drawImage(img, 120, 40, 400, 400); };
    img.src = src;
  }
  setInterval(() => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, 1, 1); }, 100);
  const fake = { getUserMedia: async () => { sessionStorage.setItem("cameraOpened", "yes"); return canvas.captureStream(10); } };
  Object.defineProperty(navigator, "mediaDevices", { value: fake, configurable: true });
})();
"""


def _log_in_by_keyboard(page: Any, site: str, email: str) -> None:
    page.goto(f"{site}/agent/login")
    page.focus("input[name=username]")
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site}/agent/")


def _focused_name(page: Any) -> str:
    return str(page.evaluate("document.activeElement && document.activeElement.name"))


def _alice_with_a_clerk(email: str = "clerk@alice.example") -> Reseller:
    alice = Reseller.objects.get(name="Alice Mobile")
    make_staff(alice, email, "clerk")
    return alice


def test_a_keyboard_only_sale_on_a_desktop_in_english(site: str, desktop: Any) -> None:
    alice = _alice_with_a_clerk()
    durable(lambda: sell_topup(alice, iccid(5), "month-20g", "EARLIER-1"))  # the top plan
    before = float_of(alice)
    page = desktop("en")
    _log_in_by_keyboard(page, site, "clerk@alice.example")
    assert page.inner_text("#today-count").strip() == "1"
    page.goto(f"{site}/agent/sell")
    assert page.locator(".official").count() == 0  # no consumer banner at the counter
    assert _focused_name(page) == "device"  # type straight away
    assert page.input_value("select[name=plan]") == "month-20g"  # most sold, preselected
    page.keyboard.type(iccid(3))
    page.keyboard.press("Enter")
    page.wait_for_selector("#confirmation")
    assert "•" in page.inner_text("#confirm-device")
    assert page.evaluate("document.activeElement.textContent").strip() == "Confirm and top up"
    shot(page, "agent-counter-confirm-desktop-en")
    page.keyboard.press("Enter")
    page.wait_for_selector("#receipt-no")
    order = Order.objects.get(reseller=alice, device__iccid=iccid(3))
    assert order.plan.code == "month-20g"
    assert order.status == "fulfilled"
    assert float_of(alice) == before - order.amount

    # Without a plan chosen, Enter in the device field goes to the plan, Enter there on.
    page.goto(f"{site}/agent/sell")
    page.select_option("select[name=plan]", "")
    page.focus("input[name=device]")
    page.keyboard.type(iccid(4))
    page.keyboard.press("Enter")
    assert _focused_name(page) == "plan"
    assert "/agent/sell" in page.url
    page.select_option("select[name=plan]", "day-1g")  # a select is picked with arrows
    page.focus("select[name=plan]")
    page.keyboard.press("Enter")
    page.wait_for_selector("#confirmation")
    page.keyboard.press("Enter")
    page.wait_for_selector("#receipt-no")
    assert Order.objects.get(reseller=alice, device__iccid=iccid(4)).plan.code == "day-1g"

    page.goto(f"{site}/agent/")
    assert page.inner_text("#today-count").strip() == "3"
    shot(page, "agent-counter-dashboard-desktop-en")
    page.goto(f"{site}/agent/transactions")
    assert "Margin" in page.inner_text("table.agent-topups thead")
    shot(page, "agent-counter-transactions-desktop-en")


def test_a_recent_device_and_a_quick_plan_by_click(site: str, desktop: Any) -> None:
    alice = _alice_with_a_clerk()
    durable(lambda: sell_topup(alice, iccid(2), "day-1g", "EARLIER-2"))
    durable(lambda: sell_topup(alice, iccid(1), "credit-50", "EARLIER-3"))
    page = desktop("en")
    _log_in_by_keyboard(page, site, "clerk@alice.example")
    page.goto(f"{site}/agent/sell")
    assert iccid(2) not in page.content()
    page.click("#recent-devices [data-recent]:nth-of-type(2)")  # the older one: iccid(2)
    assert "•" in page.input_value("input[name=device]")
    page.click('#top-plans [data-plan="day-1g"]')
    assert page.input_value("select[name=plan]") == "day-1g"
    assert page.url.removeprefix(site) == "/agent/sell"  # filled in place, no reload
    page.keyboard.press("Enter")  # the Continue button has the focus
    page.wait_for_selector("#confirmation")
    page.keyboard.press("Enter")
    page.wait_for_selector("#receipt-no")
    order = Order.objects.filter(reseller=alice).order_by("-pk").first()
    assert order is not None
    assert (order.device.iccid, order.plan.code) == (iccid(2), "day-1g")


def test_scanning_with_the_browsers_barcode_detector(site: str, desktop: Any) -> None:
    alice = _alice_with_a_clerk()
    durable(lambda: sell_topup(alice, iccid(5), "day-1g", "EARLIER-4"))
    page = desktop("en")
    # The code the detector "sees" as a label may print it: in groups, with the F filler.
    scanned = " ".join([iccid(2)[i : i + 4] for i in range(0, len(iccid(2)), 4)]) + "F"
    page.add_init_script(FAKE_CAMERA)
    page.add_init_script(
        """
        window.BarcodeDetector = class {
          static async getSupportedFormats() { return ["qr_code", "code_128"]; }
          constructor(options) { sessionStorage.setItem("formats", JSON.stringify(options && options.formats)); }
          async detect(source) {
            window.__detectCalls = (window.__detectCalls || 0) + 1;
            return window.__detectCalls < 3 ? [] : [{ rawValue: SCANNED, format: "code_128" }];
          }
        };
        """.replace("SCANNED", json.dumps(scanned))
    )
    _log_in_by_keyboard(page, site, "clerk@alice.example")
    page.goto(f"{site}/agent/sell")
    assert page.is_visible("#scan")
    page.click("#scan")
    page.wait_for_selector("#confirmation")  # scanned, filled in and sent
    assert page.evaluate("sessionStorage.getItem('cameraOpened')") == "yes"
    assert json.loads(page.evaluate("sessionStorage.getItem('formats')")) == ["qr_code", "code_128"]
    assert "•" in page.inner_text("#confirm-device")
    page.keyboard.press("Enter")
    page.wait_for_selector("#receipt-no")
    assert Order.objects.filter(reseller=alice, device__iccid=iccid(2)).count() == 1


def test_scanning_a_qr_code_with_the_vendored_decoder(site: str, desktop: Any) -> None:
    alice = _alice_with_a_clerk()
    buffer = io.BytesIO()
    segno.make(iccid(4), error="m").save(buffer, kind="png", scale=8, border=4)
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    page = desktop("en")
    page.add_init_script(f"window.__cameraImage = {image!r}; delete window.BarcodeDetector;")
    page.add_init_script(FAKE_CAMERA)
    scripts: list[str] = []
    page.on("request", lambda request: scripts.append(request.url))
    _log_in_by_keyboard(page, site, "clerk@alice.example")
    page.goto(f"{site}/agent/sell")
    page.select_option("select[name=plan]", "day-1g")
    page.click("#scan")
    page.wait_for_selector("#confirmation", timeout=30_000)
    assert any("/static/web/vendor/zxing-library" in url for url in scripts)
    assert all(url.startswith(site) for url in scripts)  # nothing from a CDN
    page.keyboard.press("Enter")
    page.wait_for_selector("#receipt-no")
    assert Order.objects.filter(reseller=alice, device__iccid=iccid(4)).count() == 1


def test_the_counter_in_simplified_chinese(site: str, desktop: Any, phone: Any) -> None:
    alice = _alice_with_a_clerk()
    durable(lambda: sell_topup(alice, iccid(1), "credit-50", "EARLIER-5"))
    durable(lambda: sell_topup(alice, iccid(2), "day-1g", "EARLIER-6"))
    for name, page in (("desktop", desktop("zh-hans")), ("phone", phone("zh-hans"))):
        _log_in_by_keyboard(page, site, "clerk@alice.example")
        assert page.locator(".official").count() == 0
        text = page.inner_text("#today")
        assert "今日销售" in text
        assert "利润" in text
        assert page.inner_text("#today-retail") == "¥55.00"
        shot(page, f"agent-counter-dashboard-{name}-zh-hans")
        page.goto(f"{site}/agent/sell")
        assert "最近充值的设备" in page.inner_text("main")
        assert "扫码" in page.inner_text("#scan")
        shot(page, f"agent-counter-sell-{name}-zh-hans")

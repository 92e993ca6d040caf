"""A card number alone never binds a card: binding needs proof of holding it (its binding PIN,
or an eSIM's activation code), and wrong proofs are limited per customer and per client IP.

The probe that found the door open walked sequential ICCIDs as a logged-in customer, bound 6
of 8 (one a card a reseller had just sold) and read their eSIM activation codes.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from simtopup.accounts.models import Customer, RateCounter
from simtopup.accounts.tokens import issue_token
from simtopup.devices import binding
from simtopup.devices.binding import (
    bind_device,
    hash_pin,
    normalise_pin,
    pin_matches,
    pin_problem,
)
from simtopup.devices.inventory import create_device
from simtopup.devices.models import Device
from simtopup.ops.management.commands.demo import demo_iccid
from simtopup.orders.models import Order
from tests.staff_support import verify_console
from tests.support import Actors, eid, iccid, post_json, reseller_client, run_worker
from tests.test_app_auth import assert_problem
from tests.test_concurrency import run_concurrently
from tests.web_support import browser, field_errors, text


class Calls:
    """Wraps a function and counts its calls (from any thread); each call takes a little
    longer, so that parallel requests overlap while they compare what they were sent."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.count += 1
        time.sleep(0.05)
        return self.function(*args, **kwargs)


PIN = "4821-0937"
MATCHING_ID = "04386-AGYFT-A74Y8-3F815"
LPA = f"LPA:1$smdp.example.net${MATCHING_ID}"
ADDRESS_A, ADDRESS_B = "203.0.113.7", "198.51.100.20"


def app_for(phone: str, address: str = ADDRESS_A) -> Client:
    """A logged-in app client for a (new) customer, calling from ``address``."""
    customer, _ = Customer.objects.get_or_create(phone=phone, defaults={"language": "en"})
    raw, _token = issue_token(customer, "test")
    return Client(HTTP_AUTHORIZATION=f"Bearer {raw}", REMOTE_ADDR=address)


def bind(client: Client, device: str, proof: str | None, **extra: Any) -> Any:
    body: dict[str, Any] = {"device": device, **extra}
    if proof is not None:
        body["proof"] = proof
    return post_json(client, "/api/v1/devices", body)


def counted(key_part: str) -> int:
    """Wrong proofs counted in the current windows of the keys containing ``key_part``."""
    return max(
        RateCounter.objects.filter(key__contains=key_part).values_list("count", flat=True),
        default=0,
    )


@pytest.fixture
def alice(db: None) -> Client:
    return app_for("+8613800138000")


@pytest.fixture
def stock(db: None) -> list[Device]:
    """Eight cards with sequential ICCIDs, as the probe found them: eSIMs with activation
    codes and PINs, SIMs and hotspots with PINs."""
    cards = []
    for n in range(301, 309):
        if n % 2:
            cards.append(
                create_device(
                    kind="esim",
                    iccid=iccid(n),
                    eid=eid(n),
                    activation_code=f"LPA:1$smdp.example.net$MATCH-{n}-SECRET",
                    pin=f"{n}{n}",
                )
            )
        else:
            cards.append(create_device(kind="sim", iccid=iccid(n), pin=f"{n}{n}"))
    return cards


# --- the probe's scenario ------------------------------------------------------------------------


def test_walking_sequential_iccids_binds_nothing_and_reveals_no_activation_code(
    actors: Actors, stock: list[Device], settings: Any
) -> None:
    settings.BIND_PROOF_CUSTOMER_LIMITS = ["5/3600"]
    # A reseller has just sold one of the cards to a walk-in customer.
    sold = stock[3]
    response = post_json(
        reseller_client(actors.alice_key),
        "/reseller/v1/topups",
        {"device": sold.iccid, "plan": "day-1g", "reference": "walk-in-1"},
    )
    assert response.status_code == 201, response.content
    run_worker()
    assert Order.objects.get(device=sold).status == "fulfilled"

    mallory = app_for("+8613700137000")
    bodies = []
    for card in stock:
        # The card number alone: refused before anything else is looked at.
        alone = assert_problem(bind(mallory, card.iccid, None), 422, "validation_error")
        assert alone["errors"][0]["field"] == "proof"
        bodies.append(alone)
    answers = Counter()
    for card in stock:  # then with guessed proofs
        for guess in ["000000", card.iccid[-6:], "LPA:1$smdp.example.net$MATCH"]:
            response = bind(mallory, card.iccid, guess)
            answers[(response.status_code, response.json()["code"])] += 1
            bodies.append(response.json())
    assert answers == {(422, "invalid_proof"): 5, (429, "too_many_requests"): 19}
    assert not Device.objects.filter(owner__isnull=False).exists()
    assert Device.objects.get(pk=sold.pk).owner is None
    # Nothing the probe was told holds a card's activation code or matching ID.
    told = json.dumps(bodies)
    for card in stock:
        if card.activation_code:
            assert card.activation_code.split("$")[2] not in told
    assert mallory.get("/api/v1/devices").json()["items"] == []
    for card in stock:
        assert_problem(mallory.get(f"/api/v1/devices/{card.pk}/esim"), 404, "not_found")


def test_a_card_in_another_account_answers_a_wrong_proof_like_a_free_card(
    alice: Client, stock: list[Device]
) -> None:
    owned, free = stock[0], stock[1]
    assert bind(app_for("+8613900139000", ADDRESS_B), owned.iccid, "301301").status_code == 201
    on_owned = bind(alice, owned.iccid, "999999")
    on_free = bind(alice, free.iccid, "999999")
    assert on_owned.status_code == on_free.status_code == 422
    # Alike but for each request's own id (core/requestid.py).
    assert on_owned.json()["request_id"] != on_free.json()["request_id"]
    assert {**on_owned.json(), "request_id": ""} == {**on_free.json(), "request_id": ""}
    assert on_owned.json()["code"] == "invalid_proof"
    assert on_owned.json()["errors"] == [
        {"field": "proof", "code": "invalid_proof", "message": on_owned.json()["detail"]}
    ]
    # With the right proof the holder learns the card is in another account.
    assert_problem(bind(alice, owned.iccid, "301301"), 409, "device_bound_elsewhere")


# --- proofs that work --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    ["4821-0937", "48210937", " 4821 0937 ", "48-21-09-37", "４８２１－０９３７", "4821–0937"],
)
def test_the_printed_pin_binds_the_card(alice: Client, typed: str) -> None:
    card = create_device(kind="sim", iccid=iccid(401), pin=PIN)
    response = bind(alice, card.iccid, typed, nickname="Travel")
    assert response.status_code == 201, response.content
    card.refresh_from_db()
    assert card.owner is not None
    assert card.owner.phone == "+8613800138000"
    assert card.nickname == "Travel"
    assert counted("bind-proof") == 0  # a right proof is not counted


def test_letters_in_a_pin_are_read_in_any_case(alice: Client) -> None:
    create_device(kind="hotspot", serial="HS-401", pin="ab12cd34")
    assert bind(alice, "HS-401", "AB12 CD34").status_code == 201


@pytest.mark.parametrize(
    "proof",
    [
        LPA,
        LPA.lower(),
        f"  LPA:1$SMDP.example.net${MATCHING_ID.replace('-', '')}  ",
        MATCHING_ID,
        MATCHING_ID.lower().replace("-", " "),
    ],
)
def test_an_esims_activation_code_binds_it_whole_or_by_its_matching_id(
    alice: Client, proof: str
) -> None:
    card = create_device(kind="esim", iccid=iccid(402), activation_code=LPA)  # no PIN
    response = bind(alice, card.iccid, proof)
    assert response.status_code == 201, response.content
    esim = alice.get(f"/api/v1/devices/{response.json()['id']}/esim")
    assert esim.json()["activation_code"] == LPA


@pytest.mark.parametrize(
    "proof",
    [
        "LPA:1$smdp.other.example$" + MATCHING_ID,  # another SM-DP+
        "LPA:1$smdp.example.net$" + MATCHING_ID[:-1],
        MATCHING_ID[:-1],
        "smdp.example.net",  # public, no secret
        "LPA:1$smdp.example.net$",
    ],
)
def test_part_of_an_activation_code_is_no_proof(alice: Client, proof: str) -> None:
    card = create_device(kind="esim", iccid=iccid(402), activation_code=LPA)
    assert_problem(bind(alice, card.iccid, proof), 422, "invalid_proof")
    assert Device.objects.get(pk=card.pk).owner is None


def test_an_esim_with_a_pin_binds_with_either(alice: Client, db: None) -> None:
    by_pin = create_device(kind="esim", iccid=iccid(403), activation_code=LPA, pin=PIN)
    by_code = create_device(
        kind="esim", iccid=iccid(404), activation_code=LPA.replace("3F815", "3F816"), pin=PIN
    )
    assert bind(alice, by_pin.iccid, PIN).status_code == 201
    assert bind(alice, by_code.iccid, MATCHING_ID.replace("3F815", "3F816")).status_code == 201


def test_binding_a_card_already_mine_needs_no_proof(alice: Client) -> None:
    card = create_device(kind="sim", iccid=iccid(405), pin=PIN)
    assert bind(alice, card.iccid, PIN).status_code == 201
    again = bind(alice, card.iccid, "wrong!", nickname="Renamed")
    assert again.status_code == 200, again.content
    assert again.json()["nickname"] == "Renamed"
    assert counted("bind-proof") == 0


# --- cards that cannot be proven -----------------------------------------------------------------


@pytest.mark.parametrize(
    "card",
    [
        {"kind": "sim", "iccid": iccid(406)},
        {"kind": "esim", "iccid": iccid(406)},  # no activation code on file
        {"kind": "esim", "iccid": iccid(406), "activation_code": "LPA:1$smdp.example.net$"},
        {"kind": "esim", "iccid": iccid(406), "activation_code": "LPA:1$smdp.example.net$AB1"},
        # A physical card's activation code (imported by mistake) is no proof of holding it.
        {"kind": "sim", "iccid": iccid(406), "activation_code": LPA},
    ],
)
def test_a_card_without_pin_or_activation_code_cannot_be_bound_by_a_customer(
    alice: Client, card: dict[str, Any]
) -> None:
    device = create_device(**card)
    body = assert_problem(bind(alice, device.iccid, MATCHING_ID), 409, "proof_unavailable")
    assert "contact the shop that sold it" in body["detail"]
    assert body["errors"][0]["field"] == "device"
    assert Device.objects.get(pk=device.pk).owner is None
    assert counted("bind-proof") == 0


def test_the_domain_refuses_an_empty_proof(db: None) -> None:
    card = create_device(kind="sim", iccid=iccid(407), pin=PIN)
    me = Customer.objects.create(phone="+8613800138000")
    with pytest.raises(binding.DomainError) as refused:
        bind_device(me, card.iccid, proof="   ")
    assert refused.value.code == "proof_required"
    assert refused.value.errors[0].field == "proof"
    assert Device.objects.get(pk=card.pk).owner is None


# --- limits ------------------------------------------------------------------------------------


def test_wrong_proofs_are_counted_per_customer_then_refused_even_when_right(
    alice: Client, stock: list[Device], settings: Any
) -> None:
    settings.BIND_PROOF_CUSTOMER_LIMITS = ["3/3600"]
    card = stock[1]
    for n in range(3):
        assert_problem(bind(alice, card.iccid, f"00000{n}"), 422, "invalid_proof")
        assert counted("bind-proof:customer") == n + 1
    limited = bind(alice, card.iccid, "302302")  # the right PIN, too late
    body = assert_problem(limited, 429, "too_many_requests")
    retry_after = int(limited["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert body["errors"][0]["field"] == "proof"
    assert "Too many wrong PINs or activation codes" in body["detail"]
    assert Device.objects.get(pk=card.pk).owner is None
    assert counted("bind-proof:customer") == 3  # refused attempts are not counted
    # Another customer (from another address) is not held back…
    assert bind(app_for("+8613900139000", ADDRESS_B), card.iccid, "302302").status_code == 201
    # …and my own cards stay mine to rename.
    mine = stock[2]
    Device.objects.filter(pk=mine.pk).update(owner=Customer.objects.get(phone="+8613800138000"))
    assert bind(alice, mine.iccid, "", nickname="x").status_code == 422  # schema: proof given
    assert bind(alice, mine.iccid, "-", nickname="Mine").status_code == 200


def test_wrong_proofs_are_counted_per_client_ip_across_customers(
    stock: list[Device], settings: Any
) -> None:
    settings.BIND_PROOF_CUSTOMER_LIMITS = ["5/3600"]
    settings.BIND_PROOF_IP_LIMITS = ["4/3600"]
    card = stock[1]
    for n in range(4):  # four customers, one wrong proof each, all from one address
        client = app_for(f"+861380013810{n}", ADDRESS_A)
        assert_problem(bind(client, card.iccid, "999999"), 422, "invalid_proof")
    fifth = app_for("+8613800138109", ADDRESS_A)
    assert_problem(bind(fifth, card.iccid, "302302"), 429, "too_many_requests")
    assert Device.objects.get(pk=card.pk).owner is None
    # The same customer from another address may still try.
    elsewhere = app_for("+8613800138109", ADDRESS_B)
    assert bind(elsewhere, card.iccid, "302302").status_code == 201


def test_an_ipv6_client_is_counted_by_its_64(stock: list[Device], settings: Any) -> None:
    settings.BIND_PROOF_IP_LIMITS = ["2/3600"]
    card = stock[1]
    for n, address in enumerate(["2001:db8:1:2::1", "2001:db8:1:2::ffff"]):
        client = app_for(f"+861380013820{n}", address)
        assert_problem(bind(client, card.iccid, "999999"), 422, "invalid_proof")
    same_64 = app_for("+8613800138209", "2001:db8:1:2:abcd::9")
    assert_problem(bind(same_64, card.iccid, "302302"), 429, "too_many_requests")
    other_64 = app_for("+8613800138209", "2001:db8:1:3::9")
    assert bind(other_64, card.iccid, "302302").status_code == 201


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_parallel_wrong_proofs_never_get_past_the_limit(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.BIND_PROOF_CUSTOMER_LIMITS = ["5/3600"]
    settings.BIND_PROOF_IP_LIMITS = ["100/3600"]
    card = create_device(kind="sim", iccid=iccid(501), pin=PIN)
    me = Customer.objects.create(phone="+8613800138000")
    checks = Calls(binding.proof_matches)
    monkeypatch.setattr(binding, "proof_matches", checks)

    def attempt(proof: str) -> str:
        try:
            bind_device(me, card.iccid, proof=proof, ip=ADDRESS_A)
        except binding.DomainError as exc:
            return exc.code
        return "bound"

    results = run_concurrently([lambda n=n: attempt(f"{n:06d}") for n in range(12)], threads=12)

    assert Counter(results) == {"invalid_proof": 5, "too_many_requests": 7}
    assert checks.count == 5  # no more proofs were even compared
    assert RateCounter.objects.get(key=f"bind-proof:customer:{me.pk}").count == 5
    assert RateCounter.objects.get(key=f"bind-proof:ip:{ADDRESS_A}").count == 5
    assert attempt(PIN) == "too_many_requests"
    assert Device.objects.get(pk=card.pk).owner is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_right_proof_among_parallel_wrong_ones_binds_once_and_is_not_counted(
    settings: Any,
) -> None:
    settings.BIND_PROOF_CUSTOMER_LIMITS = ["5/3600"]
    card = create_device(kind="sim", iccid=iccid(502), pin=PIN)
    me = Customer.objects.create(phone="+8613800138000")

    def attempt(proof: str) -> str:
        try:
            return "bound" if bind_device(me, card.iccid, proof=proof)[1] else "mine"
        except binding.DomainError as exc:
            return exc.code

    results = run_concurrently(
        [lambda: attempt("000000")] * 4 + [lambda: attempt(PIN)] * 3, threads=7
    )

    # One right proof binds; the other two find the card theirs already. A wrong proof
    # tried before that commit is refused and counted; one tried after it finds the card
    # already the customer's (re-binding one's own card needs no proof): which of the two
    # depends on the interleaving, so the counts are checked against each other.
    tally = Counter(results)
    assert tally["bound"] == 1, tally
    assert set(tally) <= {"bound", "mine", "invalid_proof"}, tally
    assert tally["mine"] >= 2, tally
    assert tally["invalid_proof"] + tally["mine"] == 6, tally
    counter = RateCounter.objects.filter(key=f"bind-proof:customer:{me.pk}").first()
    # Only the refused wrong proofs are counted: the right one gave its slot back.
    assert (counter.count if counter else 0) == tally["invalid_proof"], tally
    assert Device.objects.get(pk=card.pk).owner_id == me.pk


# --- the PIN itself --------------------------------------------------------------------------------


def test_a_pin_is_stored_as_a_keyed_hash(db: None, settings: Any) -> None:
    card = create_device(kind="sim", iccid=iccid(408), pin="4821 0937")
    stored = Device.objects.values_list("pin_hash", flat=True).get(pk=card.pk)
    assert "48210937" not in stored
    assert stored.startswith("v1$")
    assert pin_matches(stored, "48210937")
    assert not pin_matches(stored, "48210938")
    assert not pin_matches("", "48210937")
    # Two cards with the same PIN do not share a hash (salted).
    assert hash_pin(PIN) != hash_pin(PIN)
    # Rotating the secret key keeps PINs working while the old key is a fallback.
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    assert pin_matches(stored, "48210937")
    settings.SECRET_KEY_FALLBACKS = []
    assert not pin_matches(stored, "48210937")


@pytest.mark.parametrize(
    ("typed", "ok"),
    [
        ("123456", True),
        ("ab-cd 12", True),
        ("ABCDEF123456", True),
        ("12345", False),
        ("1234567890123", False),
        ("1234_56", False),
        ("１２３４５６", True),  # full-width digits, as a Chinese input method types them
        ("12–34—56", True),  # any dash
        ("12#456", False),
        ("", False),
    ],
)
def test_pin_rules(typed: str, ok: bool) -> None:
    assert (pin_problem(typed) is None) == ok
    if ok:
        assert normalise_pin(typed).isalnum()
    else:
        with pytest.raises(ValueError):
            hash_pin(typed)


# --- the website ---------------------------------------------------------------------------------


def test_the_bind_form_asks_for_the_pin_and_says_where_it_is_printed(db: None) -> None:
    me = Customer.objects.create(phone="+8613800138000", language="en")
    page = text(browser(me).get("/my/devices"))
    assert 'name="proof"' in page
    assert "Binding PIN or activation code" in page
    assert "printed on the card&#x27;s packaging" in page
    chinese = text(browser(me, language="zh-hans").get("/my/devices"))
    assert "绑定 PIN 码或激活码" in chinese
    traditional = text(browser(me, language="zh-hant").get("/my/devices"))
    assert "綁定 PIN 碼或啟用碼" in traditional


def test_the_website_binds_with_the_pin_and_shows_proof_errors_on_the_form(
    db: None, settings: Any
) -> None:
    settings.BIND_PROOF_CUSTOMER_LIMITS = ["2/3600"]
    card = create_device(kind="sim", iccid=iccid(409), pin=PIN)
    me = Customer.objects.create(phone="+8613800138000", language="en")
    client = browser(me)

    missing = client.post("/my/devices", {"device": card.iccid, "proof": ""})
    assert missing.status_code == 422
    assert "Enter the binding PIN printed with the card" in field_errors(missing, "proof")[0]

    wrong = client.post("/my/devices", {"device": card.iccid, "proof": "000000"})
    assert wrong.status_code == 422
    assert field_errors(wrong, "proof") == [
        "This PIN or activation code does not match the card. Check the card's packaging "
        "and try again."
    ]
    assert field_errors(wrong, "device") == []
    chinese = browser(me, language="zh-hans").post(
        "/my/devices", {"device": card.iccid, "proof": "000001"}
    )
    assert field_errors(chinese, "proof") == [
        "PIN 码或激活码与这张卡不符。请核对卡片包装上的信息后重试。"
    ]

    limited = client.post("/my/devices", {"device": card.iccid, "proof": PIN})
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert "Too many wrong PINs or activation codes" in field_errors(limited, "proof")[0]
    assert Device.objects.get(pk=card.pk).owner is None

    RateCounter.objects.all().delete()  # the window has passed
    done = client.post("/my/devices", {"device": card.iccid, "proof": "4821 0937"})
    assert done.status_code == 302
    assert Device.objects.get(pk=card.pk).owner == me


def test_the_website_says_whom_to_ask_for_a_card_without_pin(db: None) -> None:
    card = create_device(kind="sim", iccid=iccid(410))
    me = Customer.objects.create(phone="+8613800138000", language="zh-hant")
    response = browser(me, language="zh-hant").post(
        "/my/devices", {"device": card.iccid, "proof": "123456"}
    )
    assert response.status_code == 422
    assert field_errors(response, "device") == [
        "這張卡沒有綁定 PIN 碼，無法在此綁定到帳戶。請聯絡售卡的門市或客服。"
    ]


def test_wrong_proofs_on_the_website_and_the_api_share_one_count(db: None, settings: Any) -> None:
    settings.BIND_PROOF_CUSTOMER_LIMITS = ["2/3600"]
    card = create_device(kind="sim", iccid=iccid(411), pin=PIN)
    api = app_for("+8613800138000", ADDRESS_A)
    me = Customer.objects.get(phone="+8613800138000")
    assert_problem(bind(api, card.iccid, "000000"), 422, "invalid_proof")
    assert browser(me).post("/my/devices", {"device": card.iccid, "proof": "1"}).status_code == 422
    assert_problem(bind(api, card.iccid, PIN), 429, "too_many_requests")


def test_the_openapi_document_requires_a_proof(db: None) -> None:
    schema = Client().get("/api/openapi.json").json()
    operation = schema["paths"]["/api/v1/devices"]["post"]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(body["required"]) == {"device", "proof"}
    assert "activation code" in body["properties"]["proof"]["description"]
    assert "429" in operation["responses"]


# --- the demo and the operator console --------------------------------------------------------


def demo(*args: str) -> str:
    out = StringIO()
    call_command("demo", *args, stdout=out)
    return out.getvalue()


DEMO_CARD = re.compile(
    r"^ {4}(\w+) +ICCID (\d+)  PIN (\d{8})(?:  or activation code (LPA:1\$\S+))?$", re.M
)


def test_the_demo_prints_each_cards_proof_and_it_binds(db: None) -> None:
    # A card from an older demo, made before cards had PINs.
    create_device(kind="esim", iccid=demo_iccid(1))
    output = demo("--devices", "4", "-v", "2")  # -v 2: every card
    cards = DEMO_CARD.findall(output)
    assert [iccid for _kind, iccid, _pin, _code in cards] == [
        d.iccid for d in Device.objects.order_by("pk")
    ]
    assert [kind for kind, *_rest in cards] == ["esim", "sim", "esim", "hotspot"]
    assert '"proof": PIN' in output
    assert DEMO_CARD.findall(demo("--devices", "4", "-v", "2")) == cards  # the same PINs
    alice, bob = app_for("+8613800138000"), app_for("+8613900139000", ADDRESS_B)
    for n, (_kind, number, pin, code) in enumerate(cards):
        assert pin_matches(Device.objects.get(iccid=number).pin_hash, pin)
        proof = code or pin if n % 2 else pin
        assert bind(alice if n < 2 else bob, number, proof).status_code == 201, number
    assert Device.objects.filter(owner__isnull=True).count() == 0


def test_the_console_shows_whether_a_card_has_a_pin_and_can_set_one(db: None) -> None:
    with_pin = create_device(kind="sim", iccid=iccid(601), pin=PIN)
    without = create_device(kind="sim", iccid=iccid(602))
    operator = Client()
    verify_console(operator, User.objects.create_superuser("operator", "op@example.com", "x"))
    listing = operator.get("/admin/devices/device/")
    assert listing.status_code == 200
    assert listing.content.decode().count('alt="True"') == 1  # the binding PIN column
    stored = Device.objects.get(pk=with_pin.pk).pin_hash
    page = operator.get(f"/admin/devices/device/{with_pin.pk}/change/").content.decode()
    assert "binding PIN" in page
    assert stored not in page
    assert stored.split("$")[1] not in page  # not even its salt

    url = f"/admin/devices/device/{without.pk}/change/"
    form = {"kind": "sim", "iccid": without.iccid, "status": "in_stock", "activation_code": ""}
    bad = operator.post(url, {**form, "new_pin": "123"})
    assert bad.status_code == 200
    assert "a PIN has 6 to 12 letters or digits, not 3" in bad.content.decode()
    assert Device.objects.get(pk=without.pk).pin_hash == ""
    assert operator.post(url, {**form, "new_pin": "9988 7766"}).status_code == 302
    assert pin_matches(Device.objects.get(pk=without.pk).pin_hash, "99887766")
    # Saving without a new PIN keeps the one it has.
    assert operator.post(url, {**form, "new_pin": ""}).status_code == 302
    assert pin_matches(Device.objects.get(pk=without.pk).pin_hash, "99887766")
    assert bind(app_for("+8613800138000"), without.iccid, "99887766").status_code == 201

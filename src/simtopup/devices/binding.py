"""Binding a card to a customer's account ("add to my account"), unbinding, nicknames — and
the proof of holding a card that binding needs.

A card number alone never binds a card: numbers are printed in sequence and easy to guess.
Binding a card that is not mine needs a *proof* — the binding PIN printed with the card
(imported with it, kept only as a keyed hash), or for an eSIM its activation code (the whole
``LPA:1$<SM-DP+>$<matching id>`` or just the matching ID). Proofs are compared normalised
(case, spaces and dashes do not matter) and in constant time. A card with neither cannot be
bound by a customer (``proof_unavailable``: the seller or customer service can help).

Wrong proofs are counted per customer and per client IP (accounts/ratelimit.py, in the
database). Each attempt first takes a slot of both limits by compare-and-swap and gives it
back only when its proof was right, so parallel guesses can never test more proofs than the
limits allow; past them every attempt, right or wrong, is 429 ``too_many_requests``.

The proof is checked before the card's owner is looked at: without it, a card in another
account answers exactly like a free one (``invalid_proof``), so guessing numbers tells
nothing beyond what the identifier checks (``unknown_device``) already tell.

Binding is a compare-and-swap on ``owner IS NULL``: of two customers binding the same card
at once, exactly one wins and the other gets 409 ``device_bound_elsewhere``. Binding a card
that is already mine again needs no proof and is not an error: it answers with the card (and
updates the nickname when one is given), so a retried request is harmless.
"""

from __future__ import annotations

import hmac
import math
import secrets
import unicodedata

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from simtopup.accounts import ratelimit
from simtopup.accounts.models import Customer
from simtopup.audit.log import record
from simtopup.audit.models import Action
from simtopup.core.errors import DomainError, field_error
from simtopup.devices.identifiers import find_device
from simtopup.devices.models import Device, DeviceKind

# A binding PIN: 6 to 12 letters or digits once spaces and dashes are removed, any case.
# Six characters at least: a 4-digit PIN is only 10,000 guesses, which the per-IP limit
# spreads over too few addresses to stop someone walking sequential card numbers.
PIN_MIN_LENGTH = 6
PIN_MAX_LENGTH = 12
# An activation code's matching ID shorter than this is no secret, so no proof.
MATCHING_ID_MIN_LENGTH = 6
PROOF_MAX_LENGTH = 255
DASHES = "-‐‑‒–—−"
_PIN_KEY_SALT = "simtopup.devices.binding.pin"
_PIN_HASH_VERSION = "v1"


def not_found() -> DomainError:
    return DomainError("not_found", _("There is no such card in your account."), 404)


def my_devices(customer: Customer) -> QuerySet[Device]:
    return Device.objects.filter(owner=customer)


def my_device(customer: Customer, device_id: int) -> Device:
    """One of the customer's cards; another customer's card is ``not_found`` (never reveal it
    exists)."""
    device = my_devices(customer).select_related("credit_account").filter(pk=device_id).first()
    if device is None:
        raise not_found()
    return device


# --- the binding PIN -----------------------------------------------------------------------


def _typed(text: str) -> str:
    """What was typed, as plain ASCII where it can be: full-width digits and letters (a
    Chinese input method's) become ASCII (NFKC), spaces and dashes go."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if not c.isspace() and c not in DASHES)


def normalise_pin(text: str) -> str:
    """``"48 21-09a"`` → ``"482109A"``: spaces and dashes removed, upper case."""
    return _typed(text).upper()


def pin_problem(text: str) -> str | None:
    """Why ``text`` cannot be a binding PIN, or None if it can (after normalisation)."""
    pin = normalise_pin(text)
    if not (pin.isascii() and pin.isalnum()):
        return str(_("a PIN has only letters and digits (spaces and dashes are ignored)"))
    if not PIN_MIN_LENGTH <= len(pin) <= PIN_MAX_LENGTH:
        return str(
            _("a PIN has %(min)d to %(max)d letters or digits, not %(length)d")
            % {"min": PIN_MIN_LENGTH, "max": PIN_MAX_LENGTH, "length": len(pin)}
        )
    return None


def _pin_mac(salt: str, pin: str, secret: str | bytes) -> str:
    return salted_hmac(
        _PIN_KEY_SALT, f"{salt}:{pin}", secret=secret, algorithm="sha256"
    ).hexdigest()


def hash_pin(text: str) -> str:
    """The stored form of a PIN: ``v1$<salt>$<HMAC-SHA256>`` keyed with SECRET_KEY, so a copy
    of the database alone does not give the PINs away. Raises ValueError for a bad PIN."""
    problem = pin_problem(text)
    if problem:
        raise ValueError(problem)
    salt = secrets.token_hex(8)
    return f"{_PIN_HASH_VERSION}${salt}${_pin_mac(salt, normalise_pin(text), settings.SECRET_KEY)}"


def pin_matches(pin_hash: str, text: str) -> bool:
    """Whether ``text`` is the PIN stored as ``pin_hash`` (constant time; the current secret
    key or one of SECRET_KEY_FALLBACKS, so rotating the key keeps PINs working)."""
    version, _sep, rest = pin_hash.partition("$")
    salt, _sep, mac = rest.partition("$")
    if version != _PIN_HASH_VERSION or not salt or not mac:
        # Still compare once, so a card without a PIN takes as long as one with a PIN.
        hmac.compare_digest(mac, _pin_mac("", normalise_pin(text), settings.SECRET_KEY))
        return False
    pin = normalise_pin(text)
    matched = False
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        matched |= hmac.compare_digest(mac, _pin_mac(salt, pin, secret))
    return matched


# --- the eSIM activation code as proof --------------------------------------------------------


def _token(text: str) -> str:
    """A matching ID as people type it: letters and digits only, upper case."""
    return "".join(c for c in _typed(text).upper() if c.isascii() and c.isalnum())


def _lpa_parts(code: str) -> tuple[str, str] | None:
    """(SM-DP+ address, matching ID) of an ``LPA:1$<SM-DP+>$<matching id>[$…]`` string."""
    parts = unicodedata.normalize("NFKC", "".join(code.split())).split("$")
    if len(parts) < 3 or not parts[0].upper().startswith("LPA:"):
        return None
    return parts[1].lower(), _token(parts[2])


def _activation_secret(device: Device) -> tuple[str, str] | None:
    """The eSIM's activation code as a proof, if it holds a secret (a matching ID)."""
    if device.kind != DeviceKind.ESIM or not device.activation_code:
        return None
    parts = _lpa_parts(device.activation_code)
    if parts is None or len(parts[1]) < MATCHING_ID_MIN_LENGTH:
        return None
    return parts


def activation_code_matches(device: Device, text: str) -> bool:
    """Whether ``text`` is the eSIM's activation code — the whole ``LPA:1$…`` string or just
    its matching ID — ignoring case, spaces and dashes (constant time)."""
    secret = _activation_secret(device)
    given = _lpa_parts(text)
    smdp, matching_id = given if given is not None else ("", _token(text))
    if secret is None:
        hmac.compare_digest(matching_id, matching_id)
        return False
    same_id = hmac.compare_digest(matching_id.encode(), secret[1].encode())
    same_smdp = given is None or hmac.compare_digest(smdp.encode(), secret[0].encode())
    return same_id and same_smdp


def can_prove(device: Device) -> bool:
    """Whether a customer can prove holding this card: it has a PIN or an eSIM activation
    code with a matching ID."""
    return bool(device.pin_hash) or _activation_secret(device) is not None


def proof_matches(device: Device, proof: str) -> bool:
    """Whether ``proof`` proves holding ``device`` (both checks always run)."""
    by_pin = pin_matches(device.pin_hash, proof)
    by_code = activation_code_matches(device, proof)
    return by_pin | by_code


# --- binding -------------------------------------------------------------------------------


def _proof_required() -> DomainError:
    message = _(
        "Enter the binding PIN printed with the card (for an eSIM, its activation code also works)."
    )
    return field_error("proof_required", message, "proof")


def _proof_unavailable() -> DomainError:
    message = _(
        "This card has no binding PIN, so it cannot be added to an account here. Please "
        "contact the shop that sold it, or customer service."
    )
    return field_error("proof_unavailable", message, "device", 409)


def _invalid_proof() -> DomainError:
    message = _(
        "This PIN or activation code does not match the card. Check the card's packaging "
        "and try again."
    )
    return field_error("invalid_proof", message, "proof")


def _too_many_proofs(retry_after: int) -> DomainError:
    minutes = max(1, math.ceil(retry_after / 60))
    message = ngettext(
        "Too many wrong PINs or activation codes. Please try again in %(minutes)d minute.",
        "Too many wrong PINs or activation codes. Please try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}
    return field_error(
        "too_many_requests", message, "proof", 429, headers={"Retry-After": str(retry_after)}
    )


def proof_limit_keys(customer: Customer, ip: str | None) -> list[tuple[str, list[str]]]:
    """The rate-limit counters a proof attempt is counted against, with their limits."""
    keys = [(f"bind-proof:customer:{customer.pk}", settings.BIND_PROOF_CUSTOMER_LIMITS)]
    if ip:
        keys.append((f"bind-proof:ip:{ratelimit.ip_bucket(ip)}", settings.BIND_PROOF_IP_LIMITS))
    return keys


class _ProofAccepted(Exception):
    """Leaves the savepoint that took the attempt's slots, giving them back."""


def check_proof(customer: Customer, device: Device, proof: str, ip: str | None) -> None:
    """Accept ``proof`` for ``device`` or raise ``invalid_proof`` (the attempt stays counted)
    or ``too_many_requests`` (the limits are used up; the proof was not even looked at).

    Opens its own (durable) transaction: a caller's transaction would roll the count of a
    wrong attempt back with the error."""
    now = timezone.now()
    try:
        with transaction.atomic(durable=True):
            try:
                with transaction.atomic():
                    for key, limits in proof_limit_keys(customer, ip):
                        ratelimit.hit(key, ratelimit.limits(limits), now)
                    if proof_matches(device, proof):
                        raise _ProofAccepted
            except _ProofAccepted:
                return
    except ratelimit.RateLimited as limited:
        raise _too_many_proofs(limited.retry_after) from None
    # The outer transaction committed the wrong attempt's count.
    raise _invalid_proof()


def bind_device(
    customer: Customer,
    identifier: str,
    *,
    proof: str,
    nickname: str = "",
    ip: str | None = None,
) -> tuple[Device, bool]:
    """Bind the card ``identifier`` (IMEI, ICCID, EID or serial) to ``customer``, who proves
    holding it with ``proof`` (its PIN, or an eSIM's activation code; not needed for a card
    already theirs): (the card, True if this call bound it; False if it was already theirs).
    ``ip``: the client's address, for the per-IP limit on wrong proofs."""
    device = find_device(identifier)
    if device.owner_id == customer.pk:
        return _already_mine(customer, device, nickname), False
    proof = proof.strip() if isinstance(proof, str) else ""
    if not proof:
        raise _proof_required()
    if len(proof) > PROOF_MAX_LENGTH:
        proof = proof[:PROOF_MAX_LENGTH]  # still a (wrong) attempt: it is counted
    if not can_prove(device):
        raise _proof_unavailable()
    check_proof(customer, device, proof, ip)
    now = timezone.now()
    if Device.objects.filter(pk=device.pk, owner__isnull=True).update(
        owner=customer, bound_at=now, nickname=nickname
    ):
        device.refresh_from_db()
        return device, True
    device.refresh_from_db()
    if device.owner_id == customer.pk:  # bound by another of my requests just now
        return _already_mine(customer, device, nickname), False
    message = _(
        "This card is already in another account. If it is yours, ask its current holder to "
        "remove it, or contact customer service."
    )
    raise field_error("device_bound_elsewhere", message, "device", 409)


def _already_mine(customer: Customer, device: Device, nickname: str) -> Device:
    if nickname:
        Device.objects.filter(pk=device.pk, owner=customer).update(nickname=nickname)
    device.refresh_from_db()
    return device


def _release(device_id: int, owner_id: int) -> bool:
    """Take the card out of ``owner_id``'s account if it is still there (compare-and-swap):
    its credit and bundles stay on the card. True if this call did it."""
    return bool(
        Device.objects.filter(pk=device_id, owner_id=owner_id).update(
            owner=None, bound_at=None, nickname=""
        )
    )


def unbind_device(customer: Customer, device_id: int) -> None:
    """Remove the card from the customer's account (its credit and bundles stay on it)."""
    if not _release(device_id, customer.pk):
        raise not_found()


def unbind_card(device: Device, *, actor: str, ip: str | None, reason: str) -> Device:
    """Customer service takes the card out of its customer's account (a card sold on, or
    bound by someone who should not have it): the customer's app and website no longer list
    it, and whoever proves holding it can bind it again. Audited ``device.unbind`` with the
    customer it left, in the same transaction; a replay finds it unbound (``not_bound``)."""
    reason = (reason or "").strip()
    if not reason:
        raise field_error("reason_required", _("Say why."), "reason")
    with transaction.atomic(durable=True):
        owner_id = Device.objects.filter(pk=device.pk).values_list("owner_id", flat=True).first()
        if owner_id is None or not _release(device.pk, owner_id):
            raise DomainError("not_bound", _("This card is not in anyone's account."), 409)
        record(
            Action.DEVICE_UNBIND,
            device,
            actor=actor,
            ip=ip,
            before={"owner": owner_id},
            after={"owner": None},
            reason=reason,
        )
    device.refresh_from_db()
    return device


def rename_device(customer: Customer, device_id: int, nickname: str) -> Device:
    if not Device.objects.filter(pk=device_id, owner=customer).update(nickname=nickname):
        raise not_found()
    return my_device(customer, device_id)

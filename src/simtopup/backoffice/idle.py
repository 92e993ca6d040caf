"""Staff sessions end after inactivity: a console request more than
``SIMTOPUP_STAFF_IDLE_MINUTES`` after the staff member's last one logs them out (a customer
login in the same browser stays) and so meets the login page."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY

SEEN_KEY = "backoffice_seen"
# What a staff login keeps in the session: the rest (a customer's login in the same browser,
# the language) survives the log-out.
STAFF_KEYS = frozenset(
    {
        auth.SESSION_KEY,
        auth.BACKEND_SESSION_KEY,
        auth.HASH_SESSION_KEY,
        DEVICE_ID_SESSION_KEY,
        SEEN_KEY,
    }
)


class StaffIdleMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.prefix = ""

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not self.prefix:
            self.prefix = reverse("admin:index")
        if request.path.startswith(self.prefix) and self._staff(request):
            now = time.time()
            seen = request.session.get(SEEN_KEY)
            if seen is not None and now - float(seen) > settings.STAFF_IDLE_MINUTES * 60:
                kept = {k: v for k, v in request.session.items() if k not in STAFF_KEYS}
                logout(request)  # a new session: nothing of the old one can be replayed
                request.session.update(kept)
            else:
                request.session[SEEN_KEY] = now
        return self.get_response(request)

    @staticmethod
    def _staff(request: HttpRequest) -> bool:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated and user.is_staff)

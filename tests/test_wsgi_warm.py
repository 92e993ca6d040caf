"""A web worker imports every URLconf while it starts (simtopup/wsgi.py), so a worker that
replaces a dead one answers its first request without loading the API first."""

from __future__ import annotations

import os
import subprocess
import sys


def test_loading_the_wsgi_application_imports_the_url_configuration() -> None:
    probe = (
        "import sys, simtopup.wsgi; "
        "print(all(m in sys.modules for m in ('simtopup.urls', 'simtopup.api.urls', "
        "'simtopup.web.urls')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "simtopup.settings"},
        timeout=120,
    )
    assert out.stdout.strip().splitlines()[-1] == "True", out.stdout + out.stderr

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "simtopup.settings")
application = get_wsgi_application()
# Import every URLconf (the API's routers and schemas, the console, the pages) while the web
# worker starts, not in its first request: a worker that replaces a dead one then answers at
# once, instead of making its first caller wait for seconds on a busy machine.
get_resolver().url_patterns  # noqa: B018

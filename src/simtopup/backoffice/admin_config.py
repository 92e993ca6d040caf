"""django.contrib.admin's app config with the console's site (two factors,
backoffice/site.py) as ``admin.site``: INSTALLED_APPS names it instead of
"django.contrib.admin". Its own module, so that backoffice/apps.py keeps one config."""

from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    """django.contrib.admin with the console's site (two factors, backoffice/site.py) as
    ``admin.site``."""

    default_site = "simtopup.backoffice.site.ConsoleSite"

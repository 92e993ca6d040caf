"""The console's tables (none yet). The module exists so that Django sends this app's
``post_migrate``, which creates the staff roles (backoffice/roles.py)."""

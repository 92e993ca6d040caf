"""Operations: what runs the installation and spans every domain — the worker and its
janitor pass, ``serve``, the demo data, the deployment checks.

It sits above the domains and the interfaces (nothing imports it), so ``core`` stays the
bottom layer that every package may use and that uses none of them."""

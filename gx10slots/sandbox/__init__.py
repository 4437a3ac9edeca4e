"""The local sandbox: a loopback Kubernetes API server, a simulated GX10 node and its model
servers. Its dependencies are the ``sandbox`` extra (``pip install 'gx10slots[sandbox]'``)."""

from __future__ import annotations

import importlib.util

from gx10slots.errors import UsageError

# The import names of the ``sandbox`` extra's packages (pyproject.toml).
EXTRA_MODULES = ("jsonpatch", "kubernetes_validate", "jsonschema", "referencing")
INSTALL_COMMAND = "pip install 'gx10slots[sandbox]'"


def require_extra() -> None:
    """Refuse (exit 2) before anything starts when the ``sandbox`` extra is not installed."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(
            f"the sandbox needs the 'sandbox' extra, which is not installed "
            f"(missing: {', '.join(missing)})",
            hint=f"install it: {INSTALL_COMMAND} (from a checkout: pip install -e '.[sandbox]')",
        )

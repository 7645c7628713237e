"""Admin pages for billing records, one module per kind of record; Django's
autodiscovery imports this module, which registers them in this order."""

# isort: off
from billing import admin_periods  # noqa: F401
from billing import admin_sources  # noqa: F401
from billing import admin_owners  # noqa: F401
from billing import admin_charges  # noqa: F401
from billing import admin_audit  # noqa: F401
from billing import admin_settings  # noqa: F401
from billing import admin_exchange  # noqa: F401
# isort: on

"""A plugin whose import fails, as when a vendor package lacks a dependency."""
import nrm_this_module_does_not_exist  # noqa: F401

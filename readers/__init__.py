"""Vendor readers (pluggy plugins registered through the entry-point group ``nrm_plugins``)."""

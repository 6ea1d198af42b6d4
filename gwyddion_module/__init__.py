"""The Gwyddion side of nrm-plugins: plug-in shims and their installer."""

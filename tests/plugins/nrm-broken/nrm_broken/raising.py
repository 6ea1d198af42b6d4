"""A plugin whose hooks raise: the tool must report and skip it."""
from nrm_plugins.hookspecs import hookimpl


@hookimpl
def nrm_read_identify(path, head):
    raise RuntimeError("identify exploded")


@hookimpl
def nrm_write_formats():
    raise RuntimeError("formats exploded")

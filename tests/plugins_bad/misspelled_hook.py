"""A plugin with a typo in its hook name: must become one warning, not a crash."""

from ess import hookimpl


@hookimpl
def ess_backend():  # should be ess_backends
    return []

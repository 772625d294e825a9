"""A plugin whose import fails: must become one warning, not a crash."""

raise RuntimeError("this plugin is broken on purpose")

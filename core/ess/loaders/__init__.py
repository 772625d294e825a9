"""Built-in config loaders; each is a plugin registered through the ``ess`` entry points."""

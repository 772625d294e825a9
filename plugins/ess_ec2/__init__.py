"""ess built-in plugin."""

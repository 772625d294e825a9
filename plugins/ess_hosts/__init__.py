"""ess built-in plugin: machines you already run, as a cluster's workers."""

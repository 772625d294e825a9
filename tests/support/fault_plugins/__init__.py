"""Test-only ess plugins that inject faults into the create flow (loaded with ESS_PLUGINS)."""

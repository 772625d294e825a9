"""An example ess backend: machines allocated from a fixed on-prem pool."""

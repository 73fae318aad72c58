"""Documents for auditors, generated from the sources of truth, never written by hand."""

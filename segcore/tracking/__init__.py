"""MLflow, and only here: the sweep's parent run, one child run per trial, and reading runs back
into pandas. ``segcore.tracking.schema`` holds the names both sides agree on (no MLflow import)."""

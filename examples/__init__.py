"""Demo apps for ``./scripts/demo``: a small shop and a downstream service using featureflag."""

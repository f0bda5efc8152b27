"""The featureflag override service: tokens, the flag catalog and fork URLs."""

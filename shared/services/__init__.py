"""memsync's use cases: each trigger calls exactly one of these."""

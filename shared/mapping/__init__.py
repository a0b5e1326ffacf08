"""Pure functions from Microsoft payloads to memsync's assets (docs/api.md). No I/O here."""

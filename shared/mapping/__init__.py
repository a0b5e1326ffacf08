"""Pure functions from Microsoft payloads to memsync's assets (CONTRACT section 3). No I/O here."""

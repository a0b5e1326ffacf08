"""memsync local development stack: Azurite launcher and a local Functions host."""

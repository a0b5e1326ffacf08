"""Clients of Microsoft's services: Graph, Defender, Partner Center, Key Vault."""

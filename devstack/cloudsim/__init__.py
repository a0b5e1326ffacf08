"""Microsoft cloud simulator: Entra ID, Graph (Intune), Defender, Partner Center and Key Vault.

One HTTPS aiohttp server that the real Azure SDKs run against unchanged. See README.md here.
"""

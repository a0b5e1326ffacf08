"""memsync: multi-tenant Intune and Defender asset sync for MSPs, on Azure Functions."""

__version__ = "0.1.0"

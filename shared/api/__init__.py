"""The HTTP API's faces (docs/api.md): request and response models, problem documents, OpenAPI.

Nothing here does I/O; the blueprint in `functions/integrations.py` parses with these models, calls one
service, and shapes the answer with them.
"""

"""The HTTP API's faces (CONTRACT section 3): request and response models, problem documents, OpenAPI.

Nothing here does I/O; the blueprint in `functions/integrations.py` parses with these models, calls one
service, and shapes the answer with them.
"""

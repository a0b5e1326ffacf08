"""Table Storage and queue access. A store never calls a Microsoft client."""

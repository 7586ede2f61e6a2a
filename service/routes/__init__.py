"""One router per endpoint group; ``service.main`` includes them all under /v1."""

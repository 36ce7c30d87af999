"""The issuer's HTTP layer: the FastAPI app, strict request bodies, errors as HTTP answers."""

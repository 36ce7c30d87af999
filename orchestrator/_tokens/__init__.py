"""The token client: the issuer OAuth client, the per-call token manager and its retries."""

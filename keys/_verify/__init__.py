"""Verifying tokens: the strict verifier, its policy and its key sources (static keys, JWKS cache)."""

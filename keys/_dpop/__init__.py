"""DPoP (RFC 9449): proofs of possession of a client's key, their strict verifier and server nonces."""

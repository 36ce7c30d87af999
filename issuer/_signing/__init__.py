"""The issuer's own keys: minting tokens, the ring as a key source, scheduled rotation, key events."""

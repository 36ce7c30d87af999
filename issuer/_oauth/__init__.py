"""OAuth state and rules: errors, scopes, the client registry, client and bearer auth, refresh tokens."""

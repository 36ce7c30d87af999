"""What each issuer endpoint does: token, sessions, revoke, admin keys, discovery."""

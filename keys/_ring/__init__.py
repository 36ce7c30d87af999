"""The key ring: lifecycle and rotation rule, its stored form, file and Redis stores, key events."""

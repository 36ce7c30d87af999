"""Compact JWS (RFC 7515): base64url, strict segment decoding, signing, reading a header."""

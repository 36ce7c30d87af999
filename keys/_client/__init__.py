"""What a client of the issuer holds: its private key file and its RFC 7523 assertion."""

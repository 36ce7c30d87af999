"""Single-use identifiers (assertion and token `jti`s, exchanged grants, proof `jti`s): a replay cache."""

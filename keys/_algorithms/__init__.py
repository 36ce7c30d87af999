"""Key material of our algorithms: generation, PEM, JWK import and export, signature checks."""

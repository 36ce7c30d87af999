"""The voice agent: banking function tools, confirmation, references, PII masking, speech."""

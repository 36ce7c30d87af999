"""The bank the agent talks to: the `Bank` protocol and its client over MCP."""

"""Test support shared by the whole suite: clocks, servers, ports, the issuer and MCP harnesses, stacks."""

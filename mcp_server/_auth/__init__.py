"""Who may call which tool: the bearer-token middleware, principal, scopes, replay store, metadata."""

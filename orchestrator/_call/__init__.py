"""One voice call and the worker that runs calls: identity, session store, settings, wiring."""

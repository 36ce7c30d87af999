"""`voicebank doctor`: checks a configuration before (or while) it serves, one line per check."""

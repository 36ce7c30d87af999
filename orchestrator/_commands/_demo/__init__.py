"""`voicebank demo`: a scripted call through the real orchestrator against real services."""

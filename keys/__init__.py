"""voicebank package."""

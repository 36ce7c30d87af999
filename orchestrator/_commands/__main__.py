"""`python -m orchestrator._commands`: the `voicebank` command line."""

import sys

from orchestrator._commands._cli import main

sys.exit(main())

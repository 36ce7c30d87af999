"""`python -m orchestrator`: run the voice agent worker."""

import sys

from orchestrator._call._worker import main

sys.exit(main())

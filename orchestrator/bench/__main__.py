"""``python -m orchestrator.bench`` = ``rota bench``."""

import sys

from orchestrator.bench import main

sys.exit(main())

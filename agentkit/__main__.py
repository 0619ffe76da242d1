import sys

from agentkit.cli.app import main

sys.exit(main())

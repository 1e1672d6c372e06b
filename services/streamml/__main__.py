import sys

from streamml.cli import main

sys.exit(main())

import sys

from qgen.cli import main

sys.exit(main())

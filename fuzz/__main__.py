"""`python3 -m fuzz`: see fuzz/frames.py."""

import sys

from fuzz.frames import main

sys.exit(main())

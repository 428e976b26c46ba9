"""`python -m lib.workbook ...` (`make workbook`): the headless notebook runner, lib.workbook.runner."""

import sys

from .runner import main

sys.exit(main())

"""`python -m distil.train` / `accelerate launch -m distil.train`: see distil.train.cli."""

import sys

from distil.train.cli import main

sys.exit(main())

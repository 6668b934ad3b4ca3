"""`python -m tuner search ...`: see `tuner.cli`."""

from tuner.cli import main

raise SystemExit(main())

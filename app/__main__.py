"""`python -m app ...`: see `app.cli`."""

from app.errors import interrupt_exits

with interrupt_exits():  # a Ctrl-C while the modules load is one line, not a traceback
    from app.cli import main

raise SystemExit(main())

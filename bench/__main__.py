"""`python -m bench [--only CASE ...] [--quick]`: run the suite, print the table, write results/latest.json."""

from bench.suite import main

raise SystemExit(main())

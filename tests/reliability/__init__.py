"""`python -m tests.reliability` (`make reliability`): the fault and security suites, then one table."""

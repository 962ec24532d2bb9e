"""Factory helpers shared by the test suites."""

"""The fixture plugins every test may use: the test server and its databases, and daemons."""

pytest_plugins = ["tests.support.server", "tests.support.daemon_fixtures"]

"""Accounts: users, sessions and API keys, and the login throttle."""

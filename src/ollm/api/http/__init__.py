"""Cross-cutting HTTP pieces every dialect shares: authentication, route dependencies, the error
handlers, request limits and rate limits, request ids, security headers, streaming helpers and
the graceful drain on shutdown."""

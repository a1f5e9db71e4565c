"""ollm's own REST API under ``/api/v1``: accounts, API keys, administration, chats and
their messages. ``router.py`` gathers the routers; ``schemas.py`` holds the bodies."""

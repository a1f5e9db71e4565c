"""Responses: the OpenAI Responses API's stored responses and the conversations they chain."""

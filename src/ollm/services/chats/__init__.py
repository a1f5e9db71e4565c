"""Chats: the conversation store's service, replies generated into a chat, import and export."""

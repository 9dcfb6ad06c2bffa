"""Tickets service: the lifecycle, comments, categories, attachments, ratings and history of requests."""

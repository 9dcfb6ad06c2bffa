"""Shared library of the helpdesk services: configuration, errors, events, outbox, inbox, storage, metrics, mail."""

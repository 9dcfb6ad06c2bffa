"""Helpdesk for HELIOS Orange: five services on nameko over RabbitMQ."""

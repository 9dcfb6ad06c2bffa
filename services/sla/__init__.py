"""SLA service: business calendars, deadlines, pauses, warnings and breaches (issue 5)."""

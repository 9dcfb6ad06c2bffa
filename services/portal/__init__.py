"""Portal: the web service for requesters and staff (issue 3)."""

"""Assignment service: routing rules, solver roster, offers and round robin (issue 4)."""

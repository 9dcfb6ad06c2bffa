"""ERP bridge: two-way synchronisation with HELIOS Orange (issue 6)."""

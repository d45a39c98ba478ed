"""Everything needed to run the integration on one machine without the real vendors (ARCHITECTURE §2)."""

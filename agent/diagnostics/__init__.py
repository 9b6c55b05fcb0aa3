"""Field-engineer tools: doctor, discover, test-print, test-scan, status (docs/FIELD-GUIDE.md)."""

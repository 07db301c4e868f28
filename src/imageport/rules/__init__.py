"""The rule catalogue: one small unit per rule, each carrying its own ID, severity and docs."""

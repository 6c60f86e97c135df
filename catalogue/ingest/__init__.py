"""The write path: a delivery read, validated and committed as a version, or quarantined."""

"""What Runwatch derives from the store for people: ETA, statistics, log text, date ranges and audit exports."""

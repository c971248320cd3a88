"""Calendars: load YAML with positions, validate into a model, expand schedules into occurrences."""
